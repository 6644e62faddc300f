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


class CostFunctionFactory:
    """Builds cost functions from the `cost_function` section of a pp_lite parameters file.

    Cost kinds register a builder under a type name; `create({"type": name, ...})` calls it with the
    whole section. Unknown types get an error listing the known ones.
    """

    _builders: dict[str, Callable[[Mapping[str, Any], str | None], StitchCostFunction]] = {}

    @classmethod
    def register(cls, *names: str):
        def decorator(builder):
            for name in names:
                cls._builders[name] = builder
            return builder
        return decorator

    @classmethod
    def known_types(cls) -> list[str]:
        return sorted(cls._builders)

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
        """
        if config is None:
            config = {"type": "bhattacharyya"}
        if not isinstance(config, Mapping):
            raise ConfigError(f"cost_function must be an object, got {type(config).__name__}")
        kind = config.get("type")
        if not isinstance(kind, str):
            raise ConfigError(f"cost_function.type missing or not a string; known types: {', '.join(cls.known_types())}")
        builder = cls._builders.get(kind.lower())
        if builder is None:
            raise ConfigError(f"unknown cost_function.type {kind!r}; known types: {', '.join(cls.known_types())}")
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
