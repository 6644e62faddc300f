"""The stitcher's real candidate pairs from simulated scenarios, shared by the latency benchmark and its CI gate.

A *query* is what the online stitcher asks when a fragment B arrives: the costs of every earlier
fragment A of the same direction with `0 <= B.t0 - A.t_end <= TIME_WIN`. Fragments come from
`training.simulate` and go through `runtime.feed.prepare_fragments` exactly as pp_lite feeds them
(validation, the short-fragment rule, 25 Hz resampling).
"""
from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from runtime.feed import prepare_fragments

__all__ = ["TIME_WIN", "Query", "scenario_fragments", "stitcher_queries", "sample_pairs", "candidate_groups",
           "renamed"]

# The stitcher's time window in every shipped parameters file (s).
TIME_WIN = 15.0


@dataclass(frozen=True)
class Query:
    """One arrival: the new (later) fragment and its candidate predecessors, newest end first."""

    later: Mapping[str, Any]
    candidates: tuple


def scenario_fragments(preset: str, seed: int, duration: float | None = None) -> list[dict]:
    """RAW fragments of a simulated scenario, prepared as pp_lite prepares them.

    Imports the simulator lazily: it belongs to the training extra, the rest of this module does not.
    """
    from training.simulate import simulate

    _, raw = simulate(preset, seed, duration)
    docs, _ = prepare_fragments(raw)
    return docs


def stitcher_queries(docs: Sequence[Mapping[str, Any]], time_win: float = TIME_WIN) -> list[Query]:
    """For every fragment B (in start-time order) that has candidates, the query the stitcher makes for it.

    Candidates of B: same direction, `0 <= B.timestamp[0] - A.timestamp[-1] <= time_win`, A is not B.
    """
    queries = []
    for direction in (1, -1):
        lane = sorted((d for d in docs if d["direction"] == direction), key=lambda d: float(d["timestamp"][-1]))
        ends = [float(d["timestamp"][-1]) for d in lane]
        for b in sorted(lane, key=lambda d: float(d["timestamp"][0])):
            t0 = float(b["timestamp"][0])
            lo = bisect.bisect_left(ends, t0 - time_win)
            hi = bisect.bisect_right(ends, t0)
            candidates = tuple(lane[i] for i in range(hi - 1, lo - 1, -1) if lane[i] is not b)
            if candidates:
                queries.append(Query(b, candidates))
    queries.sort(key=lambda q: float(q.later["timestamp"][0]))
    return queries


def sample_pairs(queries: Sequence[Query], limit: int, seed: int = 0) -> list[tuple]:
    """Up to `limit` (earlier, later) pairs drawn without replacement from all candidate pairs (fixed seed)."""
    pairs = [(a, q.later) for q in queries for a in q.candidates]
    if len(pairs) <= limit:
        return pairs
    keep = np.sort(np.random.default_rng(seed).choice(len(pairs), limit, replace=False))
    return [pairs[i] for i in keep]


def candidate_groups(queries: Sequence[Query], size: int, limit: int) -> list[tuple[list, Mapping[str, Any]]]:
    """Up to `limit` batch calls of exactly `size` candidates, one per query (spread over all queries).

    A query with fewer candidates is topped up by repeating its own candidates: every element is a
    real in-window pair and is scored in full, so the work per pair is what the stitcher pays.
    """
    if not queries:
        return []
    step = max(1, len(queries) // limit)
    groups = []
    for q in queries[::step][:limit]:
        groups.append((list(itertools.islice(itertools.cycle(q.candidates), size)), q.later))
    return groups


def renamed(doc: Mapping[str, Any], tag: str) -> dict:
    """A shallow copy of `doc` under a new `_id`: the same measurements, but a fragment no cache has seen."""
    out = dict(doc)
    out["_id"] = f"{doc['_id']}~{tag}"
    return out
