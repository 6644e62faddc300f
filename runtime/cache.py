"""A bounded, thread-safe LRU of per-fragment summaries keyed by fragment identity."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, Mapping, Sequence

from .fragment import fragment_key

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
        with self._lock:
            entry = data.get(key)
            if entry is not None:
                data.move_to_end(key)
                self.hits += 1
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
        out: list = [None] * len(keys)
        missing = []
        with self._lock:
            for i, key in enumerate(keys):
                entry = data.get(key)
                if entry is None:
                    missing.append(i)
                else:
                    data.move_to_end(key)
                    out[i] = entry
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

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0
