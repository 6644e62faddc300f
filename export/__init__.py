"""export-onnx: a trained run becomes a calibrated, validated, checksummed ONNX artifact for `runtime`.

- `export.specs`: one small spec per model kind (graphs, signatures, how to run it in its framework);
- `export.calibration`: the cost contract of FEATURES.md §5 (Platt, operating point, scale, floor and
  ceiling) fitted on the calibration split and folded into the graph as ONNX nodes;
- `export.validate`: the named checks every export must pass, each with its own error class;
- `export.export`: the one export path (`export_artifact`), writing into a staging folder that is
  renamed into place only when every check passed;
- `export.cli`: the `export-onnx` command.
"""
from importlib.util import find_spec as _find_spec


def _absent(name: str) -> bool:
    try:
        return _find_spec(name) is None
    except (ImportError, ValueError):
        return True


# The base install (numpy + onnxruntime) ships this package without what it runs on: say so in one line.
_missing = [_m for _m in ("torch", "sklearn", "onnx", "skl2onnx") if _absent(_m)]
if _missing:
    raise ImportError(f"the 'export' package needs the training extra: pip install 'i24-stitch-costs[train]' "
                      f"(missing: {', '.join(_missing)})")
del _find_spec, _absent, _missing

from .export import ExportError, export_artifact  # noqa: E402

__all__ = ["ExportError", "export_artifact"]
