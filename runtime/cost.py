"""The shared stitch-cost interface and the factory that builds a cost function from a pp_lite config."""
from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "INVALID_COST",
    "StitchCostFunction",
    "CostFunctionFactory",
    "load_cost_function",
    "ConfigError",
]

# The I-24 sentinel: no edge. Returned for gap < 0, gap > TIME_WIN and any non-finite result.
INVALID_COST = 1e6


class ConfigError(ValueError):
    """A `cost_function` configuration is invalid (unknown type, missing key, bad value)."""


class StitchCostFunction(ABC):
    """`compute_cost(track1, track2, TIME_WIN, param) -> float`; lower means same vehicle.

    `track1` is the earlier fragment, `track2` the later one (I-24 fragment documents). The
    cost is on the stitcher's threshold scale (edge iff cost <= stitch_thresh), and is exactly
    `INVALID_COST` when `gap = track2.t[0] - track1.t[-1]` is outside `[0, TIME_WIN]`.
    """

    name = "abstract"

    @abstractmethod
    def compute_cost(self, track1: Mapping[str, Any], track2: Mapping[str, Any], TIME_WIN: float,
                     param: Mapping[str, Any] | None = None) -> float:
        """Cost of linking `track1 -> track2`."""

    def compute_costs(self, tracks1: Sequence[Mapping[str, Any]], track2: Mapping[str, Any],
                      TIME_WIN: float, param: Mapping[str, Any] | None = None) -> np.ndarray:
        """Costs of many earlier fragments against one new fragment (the stitcher's access pattern).

        Returns a float64 array with one cost per element of `tracks1`, equal elementwise to
        `compute_cost`. Fast implementations override this.
        """
        out = np.empty(len(tracks1), dtype=np.float64)
        for i, track1 in enumerate(tracks1):
            out[i] = self.compute_cost(track1, track2, TIME_WIN, param)
        return out

    def describe(self) -> dict:
        """A JSON-serialisable description for run metadata."""
        return {"type": self.name}


# The public I24-postprocessing-lite pipeline's cost blocks (utils/stitch_cost_interface.py): types this
# runtime does not serve, and keys of its checkpoint-plus-hand-set-scale form. Both get an error that
# says what to write instead, never a silent reading as this project's shorthand.
PUBLIC_PIPELINE_TYPES = {
    "logistic_regression": "lr",
    "torch_logistic": "lr",
    "gate_rank": None,
    "hybrid": None,
    "pinn": None,
    "physics_only": None,
    "heteroscedastic": None,
}
PUBLIC_PIPELINE_KEYS = ("checkpoint_path", "model_path", "scaler_path", "scale_factor", "time_penalty",
                        "use_logit", "logit_offset", "calibration", "calibration_path", "calibration_mode",
                        "direct_cost", "gate_thresh", "features", "feature_names", "device")
EXPORTED_KINDS = ("lr", "mlp", "siamese", "tcn", "transformer")


def _public_pipeline_error(kind: str, config: Mapping[str, Any]) -> str | None:
    """The message for a public-pipeline cost block, or None when `config` is not one."""
    legacy_keys = [k for k in config if k in PUBLIC_PIPELINE_KEYS]
    lowered = kind.lower()
    if lowered not in PUBLIC_PIPELINE_TYPES and not legacy_keys:
        return None
    target = PUBLIC_PIPELINE_TYPES.get(lowered, lowered)
    drop = f"; remove {', '.join(legacy_keys)}" if legacy_keys else ""
    if target is None:
        return (f"cost_function.type {kind!r} is a cost of the public I24-postprocessing-lite pipeline that this "
                f"runtime does not serve; write {{\"type\": \"bhattacharyya\"}} or an exported model, "
                f"{{\"type\": \"tcn\"}} (one of {', '.join(EXPORTED_KINDS)}) or {{\"type\": \"onnx\", "
                f"\"artifact\": \"<folder written by export-onnx>\"}}{drop}")
    if target == "onnx":
        return (f"cost_function keys {', '.join(legacy_keys)} do not apply to an exported artifact, whose output "
                "already is the cost on the stitch_thresh scale (gap and calibration folded in); write "
                f"{{\"type\": \"onnx\", \"artifact\": \"<folder written by export-onnx>\"}}{drop}")
    if target == "bhattacharyya":
        return (f"cost_function keys {', '.join(legacy_keys)} do not apply to the Bhattacharyya cost (its "
                "parameters are stitcher_args cx, mx, cy, my); write {\"type\": \"bhattacharyya\"}")
    what = f"type {kind!r}" + (f" with {', '.join(legacy_keys)}" if legacy_keys else "")
    return (f"cost_function {what} is the public I24-postprocessing-lite form (a pickled or torch model with a "
            "hand-set scale_factor/time_penalty); this runtime serves exported ONNX artifacts whose output already "
            "is the cost on the stitch_thresh scale (gap and calibration folded in, keep stitch_thresh 3 and "
            f"master_stitch_thresh 4): write {{\"type\": \"{target}\"}} for the shipped model or "
            f"{{\"type\": \"{target}\", \"artifact\": \"<folder written by export-onnx>\"}} for your own{drop}")


class CostFunctionFactory:
    """Builds cost functions from the `cost_function` section of a pp_lite parameters file.

    Cost kinds register a builder under a type name, with the keys their section may hold;
    `create({"type": name, ...})` checks the keys and calls the builder with the whole section.
    Unknown types get an error listing the known ones, unknown keys one listing the valid keys, and
    the public I24-postprocessing-lite pipeline's cost blocks one saying what to write instead.
    """

    _builders: dict[str, Callable[[Mapping[str, Any], str | None], StitchCostFunction]] = {}
    _keys: dict[str, tuple[str, ...] | None] = {}

    @classmethod
    def register(cls, *names: str, keys: Sequence[str] | None = None):
        """Register a builder under `names`; `keys` are the section's keys besides "type" (None: unchecked)."""
        def decorator(builder):
            for name in names:
                cls._builders[name] = builder
                cls._keys[name] = None if keys is None else ("type", *keys)
            return builder
        return decorator

    @classmethod
    def known_types(cls) -> list[str]:
        return sorted(cls._builders)

    @classmethod
    def valid_keys(cls, kind: str) -> tuple[str, ...] | None:
        """The keys a `cost_function` section of type `kind` may hold (None: not checked)."""
        return cls._keys.get(kind.lower())

    @classmethod
    def create(cls, config: Mapping[str, Any] | None, base_dir: str | None = None) -> StitchCostFunction:
        """Build the cost function that `config` names.

        Parameters
        ----------
        config : mapping or None
            The `cost_function` section, e.g. `{"type": "bhattacharyya"}` or
            `{"type": "onnx", "artifact": "artifacts/tcn"}`. None means Bhattacharyya.
        base_dir : str, optional
            Directory that relative artifact paths are resolved against (the config file's folder).

        Raises
        ------
        ConfigError
            Not an object, no type, an unknown type or key, or a public-pipeline cost block.
        """
        if config is None:
            config = {"type": "bhattacharyya"}
        if not isinstance(config, Mapping):
            raise ConfigError(f"cost_function must be an object, got {type(config).__name__}")
        kind = config.get("type")
        if not isinstance(kind, str):
            raise ConfigError(f"cost_function.type missing or not a string; known types: {', '.join(cls.known_types())}")
        public = _public_pipeline_error(kind, config)
        if public is not None:
            raise ConfigError(f"{public} (known types: {', '.join(cls.known_types())})")
        builder = cls._builders.get(kind.lower())
        if builder is None:
            raise ConfigError(f"unknown cost_function.type {kind!r}; known types: {', '.join(cls.known_types())}")
        valid = cls.valid_keys(kind)
        if valid is not None:
            unknown = [str(k) for k in config if k not in valid]
            if unknown:
                raise ConfigError(f"unknown key(s) {', '.join(map(repr, unknown))} in cost_function of type "
                                  f"{kind!r}; valid keys: {', '.join(valid)}")
        return builder(config, base_dir)


def load_cost_function(config: Mapping[str, Any] | str | os.PathLike | None = None,
                       base_dir: str | None = None) -> StitchCostFunction:
    """Build a cost function from a `cost_function` section, a whole parameters dict, or a parameters file path."""
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        try:
            with open(path, encoding="utf-8") as fh:
                params = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        base_dir = base_dir or os.path.dirname(os.path.abspath(path))
        config = params
    if isinstance(config, Mapping) and "type" not in config and "cost_function" in config:
        config = config["cost_function"]
    return CostFunctionFactory.create(config, base_dir)
