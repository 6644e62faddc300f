"""Training side: I-24 data I/O, the scenario simulator, pair mining, the five models and their CLIs."""

from importlib.util import find_spec as _find_spec


def _absent(name: str) -> bool:
    try:
        return _find_spec(name) is None
    except (ImportError, ValueError):
        return True


# The base install (numpy + onnxruntime) ships this package without what it runs on: say so in one line.
_missing = [_m for _m in ("torch", "sklearn", "click") if _absent(_m)]
if _missing:
    raise ImportError(f"the 'training' package needs the training extra: pip install 'i24-stitch-costs[train]' "
                      f"(missing: {', '.join(_missing)})")
del _find_spec, _absent, _missing
