"""The feed in front of the stitcher: validate, drop too-short fragments, resample to 25 Hz.

pp_lite and pair mining both call `prepare_fragments`, so the learned costs are trained on exactly what
the stitcher sees in production (the reference's train/serve drift D6 cannot happen).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from .fragment import Fragment, FragmentError, fragment_id
from .resample import needs_resample, resample_document

__all__ = ["prepare_fragments", "MIN_SAMPLES"]

# The I-24 data feed drops fragments with <= 3 samples (REFERENCE.md §7.3).
MIN_SAMPLES = 4


def prepare_fragments(raw_docs: Sequence[Mapping[str, Any]], on_bad_fragment: str = "fail",
                      min_samples: int = MIN_SAMPLES, hz: float = 25.0) -> tuple[list[dict], dict]:
    """Validate, drop fragments shorter than `min_samples`, and resample to `hz` where needed.

    Parameters
    ----------
    raw_docs : fragment documents in file order.
    on_bad_fragment : "fail" raises the first `FragmentError`; "skip" leaves the fragment out and records it.

    Returns
    -------
    (docs, report) : the prepared documents (new dicts where resampled; `_id` as a plain string) and a
        report with `input`, `kept`, `dropped_short` (count), `dropped_short_ids`, `skipped` (list of
        {"index", "_id", "field", "problem"}), `resampled` (count).
    """
    if on_bad_fragment not in ("fail", "skip"):
        raise ValueError(f"on_bad_fragment must be 'fail' or 'skip', got {on_bad_fragment!r}")
    docs: list[dict] = []
    skipped: list[dict] = []
    short_ids: list[str] = []
    resampled = 0
    for index, doc in enumerate(raw_docs):
        try:
            frag = Fragment.from_document(doc, index)
        except FragmentError as exc:
            if on_bad_fragment == "fail":
                raise
            skipped.append({"index": index, "_id": exc.fragment_id, "field": exc.field, "problem": exc.problem})
            continue
        if frag.n < min_samples:
            short_ids.append(frag.id)
            continue
        out = dict(doc)
        out["_id"] = frag.id
        if needs_resample(out, hz):
            out = resample_document(out, hz)
            resampled += 1
        docs.append(out)
    report = {"input": len(raw_docs), "kept": len(docs), "dropped_short": len(short_ids),
              "dropped_short_ids": short_ids, "skipped": skipped, "resampled": resampled}
    return docs, report
