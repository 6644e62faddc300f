"""export-onnx: a trained run becomes a calibrated, validated, checksummed ONNX artifact for `runtime`.

- `export.specs`: one small spec per model kind (graphs, signatures, how to run it in its framework);
- `export.calibration`: the cost contract of FEATURES.md §5 (Platt, operating point, scale, floor and
  ceiling) fitted on the calibration split and folded into the graph as ONNX nodes;
- `export.validate`: the named checks every export must pass, each with its own error class;
- `export.export`: the one export path (`export_artifact`), writing into a staging folder that is
  renamed into place only when every check passed;
- `export.cli`: the `export-onnx` command.
"""
from .export import ExportError, export_artifact

__all__ = ["ExportError", "export_artifact"]
