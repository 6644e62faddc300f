"""The house has one direction: runtime <- training <- export <- workflows (workflows/__init__.py).

Every import statement of every module is read with `ast`, including the ones inside functions (the
lazy imports), so a circle cannot hide behind a deferred import.
"""
import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ("runtime", "training", "export", "workflows")  # each may import only those before it
# `python -m training.demo` is kept as a command alias of `python -m workflows.demo` (runpy, by name);
# it is an entry point only: no module imports it (checked below).
ALIASES = {"training/demo.py"}


def _modules(package: str) -> dict[str, str]:
    """Dotted module name -> file path, for every .py file of `package`."""
    out = {}
    for root, dirs, files in os.walk(os.path.join(REPO, package)):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__pycache__"))]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


def imports_of(module: str, path: str) -> set[str]:
    """Absolute dotted names imported anywhere in the file (relative imports resolved)."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), filename=path)
    is_package = path.endswith("__init__.py")
    base = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - (node.level - 1)]
                prefix = ".".join(parent + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            # `from . import x` / `from .pkg import mod` may name submodules
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def _project_imports() -> dict[str, set[str]]:
    mods = {}
    for package in LAYERS:
        mods.update(_modules(package))
    known = set(mods)
    graph = {}
    for module, path in mods.items():
        graph[module] = {name for name in imports_of(module, path) if name in known}
    return graph


GRAPH = _project_imports()


def _file(module: str) -> str:
    return os.path.relpath(_modules(module.split(".")[0])[module], REPO).replace(os.sep, "/")


def test_the_parser_sees_lazy_and_relative_imports():
    # a deferred import inside a function still counts (workflows.promote exports lazily)
    assert "export.export" in GRAPH["workflows.promote"]
    # relative imports are resolved: export.export imports its siblings and training lazily
    assert {"export.calibration", "export.fold", "training.pairs"} <= GRAPH["export.export"]
    assert "training.pairs" in GRAPH["training.train"]


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_imports_only_the_layers_below(layer):
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    bad = []
    for module, deps in GRAPH.items():
        if module.split(".")[0] != layer or _file(module) in ALIASES:
            continue
        bad += [f"{module} imports {dep}" for dep in sorted(deps) if dep.split(".")[0] not in allowed]
    assert not bad, "; ".join(bad)


def test_training_never_imports_export_or_workflows():
    for module, deps in GRAPH.items():
        if module.startswith("training") and _file(module) not in ALIASES:
            assert not {d for d in deps if d.split(".")[0] in ("export", "workflows")}, module


def test_the_command_alias_is_only_an_alias():
    for alias in ALIASES:
        module = alias[:-3].replace("/", ".")
        assert not any(module in deps for deps in GRAPH.values()), f"{module} is imported; it is only an alias"
        with open(os.path.join(REPO, alias), encoding="utf-8") as fh:
            text = fh.read()
        assert "runpy.run_module(\"workflows.demo\"" in text and len(text.splitlines()) < 20


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (a list of modules, first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_inside_export():
    sub = {m: {d for d in deps if d.startswith("export")} for m, deps in GRAPH.items() if m.startswith("export")}
    assert _cycle(sub) is None, " -> ".join(_cycle(sub))
    assert "export.fold" in GRAPH["export.calibration"]          # calibration uses fold's graph rewrites,
    assert "export.calibration" not in GRAPH["export.fold"]      # never the other way round


def test_no_import_cycle_across_the_project():
    # packages as nodes: a circle between packages is what made the layers meaningless
    packages = {layer: set() for layer in LAYERS}
    for module, deps in GRAPH.items():
        if _file(module) in ALIASES:
            continue
        packages[module.split(".")[0]].update(d.split(".")[0] for d in deps if d.split(".")[0] != module.split(".")[0])
    assert _cycle(packages) is None
