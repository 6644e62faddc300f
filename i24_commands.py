"""Console-script launcher for the training and export commands (standard library only).

The base install (`pip install i24-stitch-costs`: numpy + onnxruntime) gives the runtime and the
stitching command `pp-lite`; every other command needs the [train] extra. Each of those console
scripts starts here: without the extra it prints one line saying what to install and exits 1 (no
traceback); with it, it runs the real click command, after making sure the command takes `-h` as
well as `--help` and answers `--version` (the commands that do not declare them get them here).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

__all__ = ["COMMANDS", "TRAIN_MODULES", "missing_modules", "launch"]

EXTRA = "pip install 'i24-stitch-costs[train]'"

# console-script name -> "module:attribute" of the click command (or a main(argv) function)
COMMANDS = {
    "simulate-scenario": "training.simulate:main",
    "train-lr": "training.cli:train_lr",
    "train-mlp": "training.cli:train_mlp",
    "train-siamese": "training.cli:train_siamese",
    "train-tcn": "training.cli:train_tcn",
    "train-transformer": "training.cli:train_transformer",
    "export-onnx": "export.cli:main",
    "evaluate": "training.evaluate:main",
    "runs": "training.runs:main",
    "tune": "workflows.tune:main",
    "promote": "workflows.promote:main",
}

# Import names of the [train] extra (pyproject.toml); every command above needs the extra as a whole.
TRAIN_MODULES = ("click", "torch", "sklearn", "skl2onnx", "onnx", "matplotlib", "tqdm", "motmetrics", "optuna")


def missing_modules(names=TRAIN_MODULES) -> list[str]:
    """The modules of `names` that cannot be found (without importing any of them)."""
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def _version() -> str:
    from runtime.version import __version__

    return __version__


def _standardise(command, name: str) -> None:
    """`-h` as well as `--help`, and `--version`, on a click command that does not declare them."""
    import click

    if not isinstance(command, click.Command):
        return
    declared = {opt for param in command.params for opt in getattr(param, "opts", ())}
    settings = command.context_settings
    names = list(settings.get("help_option_names") or ["--help"])
    if "-h" not in names and "-h" not in declared:
        settings["help_option_names"] = ["-h"] + names
    if "--version" not in declared:
        click.version_option(_version(), "--version", prog_name=name)(command)


def launch(name: str, argv: list[str] | None = None):
    """Run console script `name`: the one-line message without the [train] extra, the command with it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    missing = missing_modules()
    if missing:
        if argv == ["--version"]:
            print(f"{name}, version {_version()}")
            return 0
        print(f"{name}: this command needs the training extra: {EXTRA} (missing: {', '.join(missing)})",
              file=sys.stderr)
        return 1
    module_name, attr = COMMANDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # a dependency the list above does not name
        top = (exc.name or "").split(".")[0]
        if top in ("runtime", "training", "export", "workflows"):
            raise
        print(f"{name}: this command needs the training extra: {EXTRA} (missing: {top or exc})", file=sys.stderr)
        return 1
    command = getattr(module, attr)
    _standardise(command, name)
    import click

    if isinstance(command, click.Command):
        return command.main(args=argv, prog_name=name)
    return command(argv)


def _entry(name: str):
    def run():
        return launch(name)

    run.__name__ = run.__qualname__ = name.replace("-", "_")
    run.__doc__ = f"Console script `{name}` ({COMMANDS[name]})."
    return run


simulate_scenario = _entry("simulate-scenario")
train_lr = _entry("train-lr")
train_mlp = _entry("train-mlp")
train_siamese = _entry("train-siamese")
train_tcn = _entry("train-tcn")
train_transformer = _entry("train-transformer")
export_onnx = _entry("export-onnx")
evaluate = _entry("evaluate")
runs = _entry("runs")
tune = _entry("tune")
promote = _entry("promote")


if __name__ == "__main__":  # python i24_commands.py NAME [ARGS...]
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: {os.path.basename(sys.argv[0])} {{{','.join(COMMANDS)}}} [ARGS...]", file=sys.stderr)
        sys.exit(2)
    sys.exit(launch(sys.argv[1], sys.argv[2:]))
