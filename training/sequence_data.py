"""Pair data for the sequence models: junction windows stored once per fragment, gathered per pair.

The windows come from `runtime.windows`, the same code the ONNX runtime calls, so training and
serving preprocess fragments identically (REFERENCE.md D9).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from runtime.features import DEFAULT_SCHEMA, schema_fragment
from runtime.fragment import Fragment
from runtime.windows import WINDOW_LENGTH, windows_for_fragments
from .loop import TensorPairs

__all__ = ["sequence_pairs"]


def sequence_pairs(docs: Sequence[Mapping[str, Any] | Fragment], a: np.ndarray, b: np.ndarray, labels: np.ndarray,
                   features: np.ndarray, L: int = WINDOW_LENGTH, schema: str = DEFAULT_SCHEMA) -> TensorPairs:
    """Training pairs for a sequence model.

    Parameters
    ----------
    docs : the split's fragments (resampled I-24 documents, or already validated `Fragment`s).
    a, b : (N,) indices into `docs` of each pair's earlier and later fragment.
    labels : (N,) 0/1.
    features : (N, 47) raw `i24-47-v2` pair features (the head standardises them itself).
    L : window length in samples.
    schema : the model's feature schema; under i24-47-v3 the windows never read the tracker-specific
        fields (speed from positions, confidence 1), exactly as the runtime serves them.

    Returns
    -------
    TensorPairs whose batches hold "tail"/"tail_mask" (the TAIL window of fragment a), "head"/
    "head_mask" (the HEAD window of fragment b) and "features" (float32): exactly the keyword
    arguments of `SequencePairModel.forward`. Window tables have one row per fragment.

    Raises
    ------
    FragmentError for an invalid document; ValueError for mismatched lengths or indices out of range.
    """
    a = np.asarray(a, dtype=np.int64).reshape(-1)
    b = np.asarray(b, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    features = np.asarray(features, dtype=np.float32)
    n = labels.shape[0]
    if a.shape[0] != n or b.shape[0] != n or features.ndim != 2 or features.shape[0] != n:
        raise ValueError(f"a {a.shape}, b {b.shape}, labels {labels.shape} and features {features.shape} "
                         "must have one row per pair")
    for name, index in (("a", a), ("b", b)):
        if n and (index.min() < 0 or index.max() >= len(docs)):
            raise ValueError(f"index {name} out of range for {len(docs)} fragments "
                             f"(min {index.min()}, max {index.max()})")
    fragments = [schema_fragment(doc if isinstance(doc, Fragment) else Fragment.from_document(doc, i), schema)
                 for i, doc in enumerate(docs)]
    tails, tail_masks, heads, head_masks = (torch.from_numpy(np.ascontiguousarray(t))
                                            for t in windows_for_fragments(fragments, L))
    return TensorPairs(
        labels,
        {"features": torch.from_numpy(features)},
        {"tail": (tails, a), "tail_mask": (tail_masks, a), "head": (heads, b), "head_mask": (head_masks, b)},
    )
