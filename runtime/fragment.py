"""Validate I-24 fragment documents once, at the boundary, and hold them as contiguous float arrays.

Every consumer (cost functions, pair mining, pp_lite) goes through `Fragment.from_document`, so a
bad document always fails the same way: a `FragmentError` naming the fragment `_id` and the field.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "FragmentError",
    "Fragment",
    "fragment_id",
    "fragment_key",
    "REQUIRED_ARRAYS",
]

REQUIRED_ARRAYS = ("timestamp", "x_position", "y_position")
DIMENSION_FIELDS = ("length", "width", "height")
# velocity and detection_confidence are not resampled by the I-24 pipeline (REFERENCE.md §7.3),
# so a length that differs from `timestamp` means "absent", not "corrupt".
OPTIONAL_SAMPLE_FIELDS = ("velocity", "detection_confidence")
MAX_SAMPLES = 2_000_000


class FragmentError(ValueError):
    """A fragment document is invalid. Names the fragment, the field and what is wrong."""

    def __init__(self, fragment: str | None, field: str, problem: str, index: int | None = None):
        self.fragment_id = fragment
        self.field = field
        self.problem = problem
        self.index = index
        where = f"fragment {fragment!r}" if fragment is not None else "fragment with no _id"
        if index is not None:
            where += f" (document {index})"
        super().__init__(f"{where}: field '{field}': {problem}")


def fragment_id(doc: Mapping[str, Any], index: int | None = None) -> str:
    """The `_id` of a document as a string; accepts `{"$oid": "..."}` and plain strings."""
    if type(doc) is dict:
        # Fast path for the common case (every cache lookup of every cost call comes here).
        raw = doc.get("_id")
        if type(raw) is str and raw:
            return raw
    if not isinstance(doc, Mapping):
        raise FragmentError(None, "<document>", f"expected a JSON object, got {type(doc).__name__}", index)
    try:
        raw = doc["_id"]
    except KeyError:
        raise FragmentError(None, "_id", "missing", index) from None
    if isinstance(raw, str):
        if raw:
            return raw
        raise FragmentError(None, "_id", "empty string", index)
    if isinstance(raw, Mapping) and isinstance(raw.get("$oid"), str) and raw["$oid"]:
        return raw["$oid"]
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    raise FragmentError(None, "_id", f"expected a string or {{'$oid': str}}, got {raw!r:.60}", index)


def fragment_key(doc: Mapping[str, Any]) -> tuple:
    """Cache identity: `_id`, sample count and last timestamp, so a fragment that grows is a new entry.

    Cheap (no array conversion); raises `FragmentError` when the fields it reads are unusable.
    """
    if type(doc) is dict:
        # Fast path for the common case (every cache lookup of every cost call comes here): the same
        # key the general path below returns for a plain string `_id` and a list of floats.
        fid = doc.get("_id")
        ts = doc.get("timestamp")
        if type(fid) is str and fid and type(ts) is list and ts:
            last = ts[-1]
            if type(last) is float:
                return (fid, len(ts), last)
    fid = fragment_id(doc)
    try:
        ts = doc["timestamp"]
    except (KeyError, TypeError):
        raise FragmentError(fid, "timestamp", "missing") from None
    try:
        n = len(ts)
        last = ts[-1] if n else None
    except (TypeError, KeyError, IndexError):  # a number, or a mapping (which has a length too)
        raise FragmentError(fid, "timestamp", f"expected an array, got {type(ts).__name__}") from None
    if type(last) is float or last is None:
        return (fid, n, last)
    # ints (which may be too large for a float), numpy scalars and other number types
    try:
        return (fid, n, float(last))
    except (TypeError, ValueError):
        raise FragmentError(fid, "timestamp", f"non-numeric value {last!r:.40}") from None
    except OverflowError:
        raise FragmentError(fid, "timestamp", f"number too large for a float: {last!r:.40}") from None


def _as_float_array(fid: str, field: str, value: Any, index: int | None) -> np.ndarray:
    if isinstance(value, (str, bytes, Mapping)) or value is None:
        raise FragmentError(fid, field, f"expected an array of numbers, got {type(value).__name__}", index)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FragmentError(fid, field, "contains non-numeric values", index) from None
    except OverflowError:  # a JSON integer beyond float range
        raise FragmentError(fid, field, "contains a number too large for a float", index) from None
    if arr.ndim != 1:
        raise FragmentError(fid, field, f"expected a 1-D array, got shape {arr.shape}", index)
    if arr.size == 0:
        raise FragmentError(fid, field, "empty array", index)
    if arr.size > MAX_SAMPLES:
        raise FragmentError(fid, field, f"{arr.size} samples exceeds the limit of {MAX_SAMPLES}", index)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise FragmentError(fid, field, f"non-finite value {arr[bad]} at sample {bad}", index)
    return np.ascontiguousarray(arr)


def _as_scalar(fid: str, field: str, value: Any, index: int | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise FragmentError(fid, field, f"expected a number, got {type(value).__name__}", index)
    try:
        v = float(value)
    except OverflowError:
        raise FragmentError(fid, field, f"number too large for a float: {value!r:.40}", index) from None
    if not math.isfinite(v):
        raise FragmentError(fid, field, f"non-finite value {v}", index)
    return v


class Fragment:
    """One validated fragment: contiguous float64 arrays plus the scalars the costs need.

    Attributes
    ----------
    id : str
        The fragment `_id` as a string.
    direction : int
        +1 eastbound (x increasing), -1 westbound.
    t, x, y : np.ndarray
        Timestamps (s, strictly increasing) and positions (ft), all of length `n`.
    xy : np.ndarray
        (2, n): x and y as the rows of one array (read-only by convention, like the others).
    length, width, height : np.ndarray or None
        Per-sample dimensions (a scalar field is broadcast); None when the field is absent.
    velocity, confidence : np.ndarray or None
        Per-sample speed and detection confidence; None when absent or of another length than `t`.
    first_timestamp_field, last_timestamp_field : float
        The scalar fields as stored (the arrays' ends when absent); the v1 feature schema reads them.
    """

    __slots__ = (
        "id", "direction", "t", "x", "y", "length", "width", "height", "velocity", "confidence",
        "first_timestamp_field", "last_timestamp_field", "starting_x_field", "ending_x_field",
        "compute_node_id", "n", "_xy",
    )

    def __init__(self, id, direction, t, x, y, length=None, width=None, height=None, velocity=None,
                 confidence=None, first_timestamp_field=None, last_timestamp_field=None,
                 starting_x_field=None, ending_x_field=None, compute_node_id=1, xy=None):
        self.id = id
        self.direction = direction
        self.t = t
        self.x = x
        self.y = y
        self.n = int(t.shape[0])
        self.length = length
        self.width = width
        self.height = height
        self.velocity = velocity
        self.confidence = confidence
        self.first_timestamp_field = float(t[0]) if first_timestamp_field is None else first_timestamp_field
        self.last_timestamp_field = float(t[-1]) if last_timestamp_field is None else last_timestamp_field
        self.starting_x_field = float(x[0]) if starting_x_field is None else starting_x_field
        self.ending_x_field = float(x[-1]) if ending_x_field is None else ending_x_field
        self.compute_node_id = compute_node_id
        self._xy = xy

    def without_tracker_fields(self) -> "Fragment":
        """A copy sharing every array but with `velocity` and `confidence` absent (None)."""
        return Fragment(self.id, self.direction, self.t, self.x, self.y, self.length, self.width, self.height,
                        None, None, self.first_timestamp_field, self.last_timestamp_field,
                        self.starting_x_field, self.ending_x_field, self.compute_node_id, self._xy)

    @property
    def xy(self) -> np.ndarray:
        """(2, n) array whose rows are `x` and `y` (built once, on first use, unless given)."""
        if self._xy is None:
            self._xy = np.stack((self.x, self.y))
        return self._xy

    @property
    def first_timestamp(self) -> float:
        return float(self.t[0])

    @property
    def last_timestamp(self) -> float:
        return float(self.t[-1])

    @property
    def duration(self) -> float:
        return float(self.t[-1] - self.t[0])

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], index: int | None = None) -> "Fragment":
        """Validate an I-24 fragment document and convert it.

        Raises
        ------
        FragmentError
            Missing key, wrong type, empty or length-mismatched array, NaN/inf, timestamps not
            strictly increasing, direction not +1/-1. The message names `_id` and the field.
        """
        fid = fragment_id(doc, index)
        for field in REQUIRED_ARRAYS + ("direction",):
            if field not in doc:
                raise FragmentError(fid, field, "missing", index)
        converted = _convert_lists(doc)
        t = converted.get("timestamp")
        if t is None:
            t = _as_float_array(fid, "timestamp", doc["timestamp"], index)
        n = t.shape[0]
        if n > 1:
            steps = np.diff(t)
            if not (steps > 0).all():
                bad = int(np.flatnonzero(steps <= 0)[0])
                kind = "duplicate" if steps[bad] == 0 else "decreasing"
                raise FragmentError(
                    fid, "timestamp",
                    f"not strictly increasing ({kind} at sample {bad + 1}: {float(t[bad])!r} -> {float(t[bad + 1])!r})", index)
        arrays = {}
        for field in ("x_position", "y_position"):
            arr = converted.get(field)
            if arr is None:
                arr = _as_float_array(fid, field, doc[field], index)
            if arr.shape[0] != n:
                raise FragmentError(fid, field, f"length {arr.shape[0]} != timestamp length {n}", index)
            arrays[field] = arr

        raw_dir = doc["direction"]
        if isinstance(raw_dir, bool) or not isinstance(raw_dir, (int, float, np.integer, np.floating)) \
                or raw_dir not in (1, -1):
            raise FragmentError(fid, "direction", f"must be +1 (EB) or -1 (WB), got {raw_dir!r:.40}", index)
        direction = int(raw_dir)

        dims = {}
        for field in DIMENSION_FIELDS:
            value = doc.get(field)
            if value is None:
                dims[field] = None
                continue
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                v = _as_scalar(fid, field, value, index)
                if v <= 0:
                    raise FragmentError(fid, field, f"must be positive, got {v}", index)
                dims[field] = np.full(n, v)
                continue
            arr = converted.get(field)
            if arr is not None:  # checked positive in one go
                dims[field] = arr
                continue
            arr = _as_float_array(fid, field, value, index)
            if arr.shape[0] != n:
                raise FragmentError(fid, field, f"length {arr.shape[0]} != timestamp length {n}", index)
            if (arr <= 0).any():
                raise FragmentError(fid, field, f"must be positive, got {arr.min()}", index)
            dims[field] = arr

        optional = {}
        for field in OPTIONAL_SAMPLE_FIELDS:
            value = doc.get(field)
            if value is None:
                optional[field] = None
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                optional[field] = None  # a scalar speed/confidence carries no per-sample information
                continue
            arr = converted.get(field)
            if arr is None:
                arr = _as_float_array(fid, field, value, index) if _nonempty(value) else None
            optional[field] = arr if arr is not None and arr.shape[0] == n else None

        scalars = {}
        for field in ("first_timestamp", "last_timestamp", "starting_x", "ending_x"):
            value = doc.get(field)
            scalars[field] = None if value is None else _as_scalar(fid, field, value, index)

        node = doc.get("compute_node_id", 1)
        if isinstance(node, bool) or not isinstance(node, (int, float, np.integer, np.floating)):
            raise FragmentError(fid, "compute_node_id", f"expected a number, got {type(node).__name__}", index)

        return cls(
            fid, direction, t, arrays["x_position"], arrays["y_position"],
            dims["length"], dims["width"], dims["height"],
            optional["velocity"], optional["detection_confidence"],
            scalars["first_timestamp"], scalars["last_timestamp"],
            scalars["starting_x"], scalars["ending_x"], node, converted.get("xy"),
        )


_LIST_FIELDS = REQUIRED_ARRAYS + DIMENSION_FIELDS + OPTIONAL_SAMPLE_FIELDS


def _convert_lists(doc: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every per-sample field that is a plain list as long as `timestamp`, converted in one numpy call.

    The common case (a JSON document of lists): one conversion and one finiteness check for all of them
    instead of one each. Returns field -> row of one (F, n) float64 block (plus "xy", the x and y rows
    as one (2, n) view), already checked finite, and the dimensions positive; `{}` whenever anything
    is unusual (other types, other lengths, non-numeric or non-finite values, a non-positive dimension),
    so that the field-by-field path runs and names the problem.
    """
    if type(doc) is not dict:
        return {}
    ts = doc.get("timestamp")
    if type(ts) is not list or not 0 < len(ts) <= MAX_SAMPLES:
        return {}
    n = len(ts)
    names = [f for f in _LIST_FIELDS if type(doc.get(f)) is list and len(doc[f]) == n]
    if names[:3] != list(REQUIRED_ARRAYS):
        return {}
    try:
        block = np.array([doc[f] for f in names], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return {}
    if block.ndim != 2 or not np.isfinite(block).all():
        return {}
    dims = [i for i, f in enumerate(names) if f in DIMENSION_FIELDS]
    if dims and (block[dims[0]:dims[-1] + 1] <= 0).any():  # the dimensions present are adjacent rows
        return {}
    out = dict(zip(names, block))
    out["xy"] = block[1:3]
    return out


def _nonempty(value: Any) -> bool:
    try:
        return len(value) > 0
    except TypeError:
        return True  # let the array conversion report the type
