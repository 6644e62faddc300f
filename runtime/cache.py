"""A bounded, thread-safe LRU of per-fragment summaries keyed by fragment identity."""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, Mapping, Sequence

from .fragment import FragmentError, fragment_key

__all__ = ["FragmentCache"]


class FragmentCache:
    """Per-fragment work (validation, windows, fits, embeddings) done once and reused.

    Identity is `(_id, sample count, last timestamp)` (see `fragment_key`), so a fragment that
    grows is a new entry. `build(doc)` computes the summary on a miss; it runs outside the lock,
    so two threads may both build the same entry once, which is harmless (same result).
    """

    def __init__(self, build: Callable[[Mapping[str, Any]], Any], maxsize: int = 4096):
        if maxsize < 1:
            raise ValueError(f"cache maxsize must be >= 1, got {maxsize}")
        self._build = build
        self._maxsize = int(maxsize)
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def maxsize(self) -> int:
        return self._maxsize

    def __len__(self) -> int:
        return len(self._data)

    def get(self, doc: Mapping[str, Any]) -> Any:
        key = fragment_key(doc)
        data = self._data
        # A hit takes no lock: `get` and `move_to_end` are single C calls on the OrderedDict, atomic
        # under the GIL, and an entry evicted between the two is still a valid summary to return.
        entry = data.get(key)
        if entry is not None:
            try:
                data.move_to_end(key)
            except KeyError:
                pass
            self.hits += 1  # a statistic: increments racing with another thread may be lost
            return entry
        entry = self._build(doc)
        with self._lock:
            self.misses += 1
            data[key] = entry
            if len(data) > self._maxsize:
                data.popitem(last=False)
        return entry

    def get_many(self, docs: Sequence[Mapping[str, Any]], keys: Sequence[Hashable] | None = None) -> list:
        """`[get(doc) for doc in docs]` with one lock round-trip: the batch scorers' access pattern.

        `keys`, when given, are the documents' `fragment_key`s, already computed by the caller
        (e.g. to read the last timestamps for the time-window gate).
        """
        if keys is None:
            keys = [fragment_key(doc) for doc in docs]
        data = self._data
        get, move_to_end = data.get, data.move_to_end
        out = [get(key) for key in keys]  # lock-free, as in `get`
        missing = [i for i, entry in enumerate(out) if entry is None]
        for key, entry in zip(keys, out):
            if entry is not None:
                try:
                    move_to_end(key)
                except KeyError:  # evicted by another thread meanwhile: the entry is still valid
                    pass
        self.hits += len(keys) - len(missing)
        for i in missing:
            out[i] = self._build(docs[i])
        if missing:
            with self._lock:
                self.misses += len(missing)
                for i in missing:
                    data[keys[i]] = out[i]
                while len(data) > self._maxsize:
                    data.popitem(last=False)
        return out

    def candidates(self, tracks1: Sequence[Mapping[str, Any]], track2: Mapping[str, Any],
                   time_win: float) -> tuple[list[int], list[float], Any, list]:
        """The time-window gate of a batch scorer, then the entries it needs.

        Returns `(live, gaps, entry2, entries1)`: the indices `i` of `tracks1` with
        `0 <= track2.t[0] - tracks1[i].t[-1] <= time_win`, their gaps, and the cache entries of `track2`
        and of the live candidates (nothing is looked up when none is live). The candidates' cache keys
        carry their last timestamps, so one read of each document serves the gate and the lookup.
        Unreadable or non-finite junction timestamps are validated, which raises `FragmentError` naming
        the document and field; finite timestamps whose difference overflows are simply gated out.
        """
        keys = [fragment_key(doc) for doc in tracks1]
        try:
            start = float(track2["timestamp"][0])
            gaps = [start - float(key[2]) for key in keys]
        except (KeyError, IndexError, TypeError, ValueError, OverflowError):
            gaps = None
        if gaps is None or not math.isfinite(sum(gaps)):
            self.get(track2)
            self.get_many(tracks1, keys)
            if gaps is None:  # pragma: no cover - validation above has already raised
                raise FragmentError(None, "timestamp", "unreadable in a candidate fragment")
        live = [i for i, gap in enumerate(gaps) if 0.0 <= gap <= time_win]
        if not live:
            return live, [], None, []
        if len(live) == len(keys):
            return live, gaps, self.get(track2), self.get_many(tracks1, keys)
        return (live, [gaps[i] for i in live], self.get(track2),
                self.get_many([tracks1[i] for i in live], [keys[i] for i in live]))

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0
