"""Stitch-cost runtime: numpy + onnxruntime only. What pp_lite imports.

`compute_cost(track1, track2, TIME_WIN, param) -> float` behind one interface for the
Bhattacharyya baseline and every exported model; per-fragment work is cached.
"""
from .version import __version__
from .cost import INVALID_COST, ConfigError, CostFunctionFactory, StitchCostFunction, load_cost_function
from .fragment import Fragment, FragmentError, fragment_id, fragment_key
from .cache import FragmentCache

__all__ = [
    "__version__",
    "INVALID_COST",
    "ConfigError",
    "CostFunctionFactory",
    "StitchCostFunction",
    "load_cost_function",
    "Fragment",
    "FragmentError",
    "fragment_id",
    "fragment_key",
    "FragmentCache",
]

# Cost kinds register themselves with the factory on import.
from .bhattacharyya import BhattacharyyaCostFunction  # noqa: E402
from .features import (  # noqa: E402
    DEFAULT_SCHEMA,
    FEATURE_NAMES,
    SCHEMAS,
    FeatureExtractor,
    FragmentFeatures,
    pair_features,
    schema_hash,
)

__all__ += [
    "BhattacharyyaCostFunction",
    "DEFAULT_SCHEMA",
    "FEATURE_NAMES",
    "SCHEMAS",
    "FeatureExtractor",
    "FragmentFeatures",
    "pair_features",
    "schema_hash",
]
from .onnx_cost import OnnxCostFunction  # noqa: E402  (registers "onnx" and the model-kind shorthands)

__all__ += ["OnnxCostFunction"]
