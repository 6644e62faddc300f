"""Load and save GT, RAW and REC fragment sets in the I-24 JSON schema, validating every document."""
from __future__ import annotations

import json
import os
import warnings
from typing import Any, Iterable, Mapping

import numpy as np

from runtime.files import atomic_write_text
from runtime.fragment import Fragment, FragmentError

__all__ = [
    "load_fragments",
    "save_fragments",
    "gt_id_of",
    "InvalidDocumentsWarning",
]


class InvalidDocumentsWarning(UserWarning):
    """Some documents were skipped because they failed validation (only with on_invalid='skip')."""


def gt_id_of(doc: Mapping[str, Any]) -> str | None:
    """Ground-truth vehicle of a RAW fragment (`gt_ids[0][0]["$oid"]`), or `_source_gt_id`, else None."""
    ids = doc.get("gt_ids")
    if ids:
        first = ids[0]
        if isinstance(first, list) and first:
            first = first[0]
        if isinstance(first, Mapping):
            first = first.get("$oid")
        if isinstance(first, str) and first:
            return first
    src = doc.get("_source_gt_id")
    return src if isinstance(src, str) and src else None


def load_fragments(path: str | os.PathLike, on_invalid: str = "raise",
                   skipped: list | None = None) -> list[dict]:
    """Read an I-24 JSON file (a list of documents) and validate each document.

    Parameters
    ----------
    path : path to a GT, RAW or REC JSON file (a JSON array of fragment documents).
    on_invalid : "raise" (default) raises the first `FragmentError`; "skip" leaves invalid
        documents out, warns once with their count and appends each error to `skipped`.

    Returns the documents (plain dicts, `_id` unchanged) in file order.
    """
    if on_invalid not in ("raise", "skip"):
        raise ValueError(f"on_invalid must be 'raise' or 'skip', got {on_invalid!r}")
    path = os.fspath(path)
    with open(path, "rb") as fh:
        try:
            docs = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(docs, list):
        raise ValueError(f"{path}: expected a JSON array of fragment documents, got {type(docs).__name__}")
    good: list[dict] = []
    errors: list[FragmentError] = []
    for index, doc in enumerate(docs):
        try:
            Fragment.from_document(doc, index)
        except FragmentError as exc:
            if on_invalid == "raise":
                raise FragmentError(exc.fragment_id, exc.field, f"{exc.problem} [{path}]", index) from None
            errors.append(exc)
            continue
        good.append(doc)
    if errors:
        if skipped is not None:
            skipped.extend(errors)
        warnings.warn(f"{path}: skipped {len(errors)} invalid document(s) of {len(docs)}; first: {errors[0]}",
                      InvalidDocumentsWarning, stacklevel=2)
    return good


def _json_default(obj: Any):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_fragments(path: str | os.PathLike, docs: Iterable[Mapping[str, Any]], validate: bool = True) -> None:
    """Write documents as an I-24 JSON array, atomically. Validates each one first unless told not to."""
    docs = list(docs)
    if validate:
        for index, doc in enumerate(docs):
            Fragment.from_document(doc, index)
    atomic_write_text(path, json.dumps(docs, default=_json_default, separators=(",", ":")))
