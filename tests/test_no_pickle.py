"""No code path in the project can execute code hidden in a data file, or evaluate a string as code.

Every Python file of runtime/, training/, export/, benchmarks/, pp_lite.py and tests/ (but this one) is
parsed, along with Python source held in its string constants (snippets that tests run with `python -c`),
and fails the test on: importing pickle and its relatives (cPickle, dill, cloudpickle, joblib, shelve,
marshal); calling `*.load`/`*.loads` on them or `read_pickle`; `torch.load` without `weights_only=True`;
`allow_pickle=True`; calling the builtins `eval` or `exec`. Method calls named `eval` (`model.eval()` on
a torch module) are fine. Parsing, not a text grep, so comments and prose do not count and aliases do.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("runtime", "training", "export", "benchmarks", "tests")
PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def project_files() -> list[Path]:
    files = [REPO / "pp_lite.py"]
    for folder in SCANNED:
        files += sorted((REPO / folder).rglob("*.py"))
    this = Path(__file__).resolve()
    return [f for f in files if f.resolve() != this]


def _dotted(node: ast.AST) -> str:
    """`torch.load` for `torch.load`, `np.lib.format` for nested attributes; '' for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _is_true(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def violations(source: str, depth: int = 0) -> list[tuple[int, str]]:
    """(line, what) for every forbidden construct in `source` (and in Python source inside its strings)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    found = []
    aliases = {}  # local name -> module it stands for ("pk" -> "pickle", "tl" -> "torch.load")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in PICKLERS:
                    found.append((node.lineno, f"import {alias.name}"))
                aliases[alias.asname or root] = alias.name if alias.asname else root
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in PICKLERS:
                found.append((node.lineno, f"from {module} import ..."))
            for alias in node.names:
                if alias.name in PICKLERS:
                    found.append((node.lineno, f"from {module} import {alias.name}"))
                aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            head, _, rest = name.partition(".")
            full = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
            last = full.rsplit(".", 1)[-1]
            if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
                found.append((node.lineno, f"{node.func.id}(...)"))
            if full.split(".")[0] in PICKLERS and last in ("load", "loads", "Unpickler", "open"):
                found.append((node.lineno, f"{full}(...)"))
            if last == "read_pickle":
                found.append((node.lineno, f"{full}(...)"))
            if full == "torch.load" and not any(k.arg == "weights_only" and _is_true(k.value) for k in node.keywords):
                found.append((node.lineno, "torch.load without weights_only=True"))
            for k in node.keywords:
                if k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False):
                    found.append((node.lineno, "allow_pickle not False"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and depth < 2:
            # Python source in a string (e.g. a `python -c` probe): scanned too, lines relative to the string
            found += [(node.lineno + line - 1, f"in a code string: {what}")
                      for line, what in violations(node.value, depth + 1)]
    return found


def test_the_project_never_unpickles_nor_evaluates_strings():
    files = project_files()
    assert len(files) > 40 and (REPO / "runtime" / "onnx_cost.py") in files
    report = [f"{path.relative_to(REPO)}:{line}: {what}"
              for path in files for line, what in violations(path.read_text(encoding="utf-8"))]
    assert report == [], "\n".join(report)


@pytest.mark.parametrize("snippet", [
    "import pickle",
    "import pickle as pk\npk.loads(b'')",
    "from pickle import loads",
    "import joblib\njoblib.load('model.joblib')",
    "import dill",
    "import torch\ntorch.load('best.pt')",
    "import torch\ntorch.load('best.pt', weights_only=False)",
    "from torch import load\nload('best.pt')",
    "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
    "import pandas as pd\npd.read_pickle('x.pkl')",
    "eval('1 + 1')",
    "exec('x = 1')",
    "code = '''\nimport subprocess\nimport pickle\n'''",
    "subprocess.run([sys.executable, '-c', 'import pickle; pickle.loads(data)'])",
])
def test_the_checker_catches(snippet):
    assert violations(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "model.eval()",
    "module = module.eval()\nEncoder(model).eval()",
    "import torch\ntorch.load(path, map_location='cpu', weights_only=True)",
    "import numpy as np\nnp.load(path, allow_pickle=False)",
    "x = 'the format is not a pickle'  # prose, not code",
    "# import pickle",
    "def f():\n    '''Models are never stored as a pickle.'''",
])
def test_the_checker_allows(snippet):
    assert violations(snippet) == [], snippet
