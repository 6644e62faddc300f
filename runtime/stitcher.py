"""The fragment stitcher: online min-cost flow (REFERENCE.md §5.4) and its exact offline counterpart.

Both solve the same problem per direction: choose links `older -> newer` (each fragment at most one
successor and one predecessor) among pairs whose real gap is in `[0, TIME_WIN]` and whose cost is
at most `stitch_thresh`, maximising the total margin `weight_gain * (stitch_thresh - cost)`.

The online stitcher takes fragments in `last_timestamp` order, scores each new fragment against all
eligible older ones with one batch `compute_costs` call, and updates the optimum with the best
alternating path from the new fragment (Wang et al. 2023, "Online Min Cost Circulation for
Multi-Object Tracking on Fragments"). Corrections to the reference: the best path is found exactly
(label correcting, not only steps that each gain); a fragment stays eligible as a predecessor
until no fragment that starts within TIME_WIN of its end can still arrive; and a path is emitted
only once nothing can change it (or after `path_timeout`, which bounds memory on endless streams),
so the online result equals the offline optimum.
"""
from __future__ import annotations

import bisect
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .cost import INVALID_COST, ConfigError, StitchCostFunction
from .fragment import Fragment, fragment_id

__all__ = [
    "StitchConfig",
    "StitchEdge",
    "StitchStats",
    "OnlineStitcher",
    "RecordedCostFunction",
    "candidate_edges",
    "solve_assignment",
    "offline_stitch",
    "chains_from_links",
]

# Strict-improvement tolerance for augmenting paths: floating-point noise in summed margins must not
# make the search chase zero-gain cycles.
_GAIN_EPS = 1e-9


@dataclass(frozen=True)
class StitchConfig:
    """Effective stitcher settings, resolved from a pp_lite parameters dict.

    Attributes
    ----------
    mode : "local" or "master".
    stitch_thresh : edge iff cost <= stitch_thresh (local: `stitch_thresh`, master: `master_stitch_thresh`).
    time_win : TIME_WIN in seconds for gating and for the cost (local: `time_win`, master: `master_time_win`).
    weight_gain : edge weight = weight_gain * (stitch_thresh - cost).
    max_fragment_duration : the longest fragment (s) whose links the online window guarantees to see.
    path_timeout : seconds after its newest fragment ended that a trajectory is emitted even if a
        (long, rare) alternating path could still revise it; bounds memory in endless dense traffic.
        None means 2 * (time_win + max_fragment_duration).
    legacy_window : reproduce the reference's eligibility rule (a fragment leaves the window once a
        newly arrived fragment starts more than TIME_WIN after its end); for comparison only.
    cost_param : the `param` mapping handed to the cost function (`stitcher_args` with the effective
        `stitch_thresh` and `time_win`).
    """

    mode: str
    stitch_thresh: float
    time_win: float
    weight_gain: float = 1.0
    max_fragment_duration: float = 60.0
    path_timeout: float = 150.0
    legacy_window: bool = False
    cost_param: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any], legacy_window: bool = False) -> "StitchConfig":
        """Read the reference parameters layout.

        Parameters
        ----------
        params : the whole parameters dict: `time_win`, `master_time_win`, `stitcher_mode`
            ("local" default) and `stitcher_args` (`stitch_thresh`, `master_stitch_thresh`, optional
            `weight_gain`, `max_fragment_duration`, and the cost's own keys such as cx, mx, cy, my).
        legacy_window : see the class attributes.

        Raises
        ------
        ConfigError
            A missing or non-numeric threshold or window, an unknown mode.
        """
        if not isinstance(params, Mapping):
            raise ConfigError(f"parameters must be a JSON object, got {type(params).__name__}")
        mode = params.get("stitcher_mode", "local")
        if mode not in ("local", "master"):
            raise ConfigError(f"stitcher_mode must be 'local' or 'master', got {mode!r}")
        args = params.get("stitcher_args")
        if not isinstance(args, Mapping):
            raise ConfigError("parameters: 'stitcher_args' missing or not an object")
        thresh_key, win_key = ("stitch_thresh", "time_win") if mode == "local" else \
            ("master_stitch_thresh", "master_time_win")
        stitch_thresh = _number(args, thresh_key, "stitcher_args")
        time_win = _number(params, win_key, "parameters")
        if time_win <= 0:
            raise ConfigError(f"parameters.{win_key} must be positive, got {time_win}")
        weight_gain = _number(args, "weight_gain", "stitcher_args", default=1.0)
        if weight_gain <= 0:
            raise ConfigError(f"stitcher_args.weight_gain must be positive, got {weight_gain}")
        max_dur = _number(args, "max_fragment_duration", "stitcher_args", default=60.0)
        if max_dur < 0:
            raise ConfigError(f"stitcher_args.max_fragment_duration must be >= 0, got {max_dur}")
        timeout = args.get("path_timeout")
        if timeout is None:
            timeout = 2.0 * (time_win + max_dur)
        else:
            timeout = _number(args, "path_timeout", "stitcher_args")
            if timeout < time_win + max_dur:
                raise ConfigError(f"stitcher_args.path_timeout must be >= time_win + max_fragment_duration "
                                  f"({time_win + max_dur:g} s), got {timeout}")
        cost_param = dict(args)
        # The cost sees the thresholds and window that are really in force (reference bug B6).
        cost_param["stitch_thresh"] = stitch_thresh
        cost_param["time_win"] = time_win
        return cls(mode, stitch_thresh, time_win, weight_gain, max_dur, float(timeout), bool(legacy_window),
                   cost_param)

    def margin(self, cost: float) -> float:
        return self.weight_gain * (self.stitch_thresh - cost)

    def describe(self) -> dict:
        return {
            "mode": self.mode, "stitch_thresh": self.stitch_thresh, "time_win": self.time_win,
            "weight_gain": self.weight_gain, "max_fragment_duration": self.max_fragment_duration,
            "path_timeout": self.path_timeout, "legacy_window": self.legacy_window,
        }


def _number(section: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = section.get(key, default)
    if value is None:
        raise ConfigError(f"{where}.{key} missing")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}.{key} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class StitchEdge:
    """A scored pair with cost <= stitch_thresh: `pred` (earlier) may link to `succ` (later)."""

    pred: str
    succ: str
    cost: float
    weight: float


@dataclass
class StitchStats:
    """Counters a stitcher run reports."""

    fragments: int = 0
    cost_pairs: int = 0          # pairs scored by the cost function
    cost_batches: int = 0        # compute_costs calls (one per fragment with candidates)
    cost_seconds: float = 0.0
    edges: int = 0
    augmentations: int = 0
    objective: float = 0.0
    long_fragments: int = 0      # fragments longer than max_fragment_duration (links may be missed)
    max_live: int = 0            # most fragments held at once (online)
    timed_out: int = 0           # trajectories emitted by path_timeout while still revisable (online)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class _Node:
    """One fragment in the online graph. `out` holds candidate predecessors, `inn` candidate successors."""

    __slots__ = ("serial", "frag", "doc", "t0", "t1", "out", "inn", "pred", "succ")

    def __init__(self, serial: int, frag: Fragment, doc: Mapping[str, Any]):
        self.serial = serial
        self.frag = frag
        self.doc = doc
        self.t0 = frag.first_timestamp
        self.t1 = frag.last_timestamp
        self.out: dict[_Node, float] = {}
        self.inn: dict[_Node, float] = {}
        self.pred: _Node | None = None
        self.succ: _Node | None = None

    def __hash__(self) -> int:
        return self.serial

    def __repr__(self) -> str:
        return f"_Node({self.frag.id!r})"


class OnlineStitcher:
    """Online min-cost-flow stitcher for one direction.

    Feed fragments with `add` in non-decreasing `last_timestamp` order; it returns the trajectories
    that became final. `flush` returns the rest at the end of the stream. A trajectory is a list of
    `(Fragment, document)` pairs in time order.

    When is a trajectory final? A future fragment gets edges only to *eligible* fragments (the
    window), and its augmenting path can only continue from an eligible fragment `g` to `g`'s
    successor, from there to that fragment's candidate predecessors, and so on. Fragments outside
    this alternating closure of the window can never change again (the closure only shrinks as the
    window does), so a chain made only of them is emitted and dropped from memory, and the online
    result stays equal to the offline optimum. In dense traffic the closure can reach far back, so
    a chain whose newest fragment ended `path_timeout` seconds ago is emitted anyway ("timed out",
    counted in `stats.timed_out`); from then on it is fixed, which can only cost optimality through
    an alternating path longer than the timeout.

    Parameters
    ----------
    cost_fn : the stitch cost; called once per new fragment via `compute_costs`.
    config : the effective thresholds and window (`StitchConfig.from_parameters`).
    on_cost_batch : optional callback `(n_pairs, seconds)` after each batch call.
    sweep_every : look for final trajectories after this many arrivals that retired a fragment from
        the window (a bounded delay; it only spares the closure walk on every arrival).
    """

    def __init__(self, cost_fn: StitchCostFunction, config: StitchConfig,
                 on_cost_batch: Callable[[int, float], None] | None = None, sweep_every: int = 16):
        if sweep_every < 1:
            raise ValueError(f"sweep_every must be >= 1, got {sweep_every}")
        self.cost_fn = cost_fn
        self.config = config
        self.stats = StitchStats()
        self.edges: list[StitchEdge] = []
        self._on_cost_batch = on_cost_batch
        self._sweep_every = sweep_every
        self._window: deque[_Node] = deque()   # eligible predecessors, in arrival (last_timestamp) order
        self._live: dict[_Node, None] = {}     # every fragment held, in arrival order
        self._retired_since_sweep = 0
        self._serial = 0
        self._last_t1 = -math.inf
        self._ids: set[str] = set()

    # ----------------------------------------------------------------- feed
    def add(self, fragment: Fragment, doc: Mapping[str, Any]) -> list[list[tuple[Fragment, Mapping[str, Any]]]]:
        """Stitch one new fragment; return the trajectories that can no longer change."""
        cfg = self.config
        if fragment.last_timestamp < self._last_t1:
            raise ValueError(f"fragment {fragment.id!r} arrives out of last_timestamp order "
                             f"({fragment.last_timestamp} < {self._last_t1})")
        if fragment.id in self._ids:
            raise ValueError(f"fragment {fragment.id!r} fed twice")
        self._ids.add(fragment.id)
        self._last_t1 = fragment.last_timestamp
        self.stats.fragments += 1
        if fragment.duration > cfg.max_fragment_duration:
            self.stats.long_fragments += 1

        node = _Node(self._serial, fragment, doc)
        self._serial += 1
        if not cfg.legacy_window:
            # No fragment still to come (last_timestamp >= this one's, duration <= max) can start
            # within TIME_WIN of these fragments' ends: they can get no new successor edge.
            horizon = node.t1 - (cfg.time_win + cfg.max_fragment_duration)
            while self._window and self._window[0].t1 < horizon:
                self._window.popleft()
                self._retired_since_sweep += 1

        candidates = self._candidates(node)
        if candidates:
            self._score(node, candidates)
        self._live[node] = None
        if node.out:
            self._augment(node)
        self._window.append(node)
        if cfg.legacy_window:
            # Reference rule: drop whatever ended more than TIME_WIN before this fragment's start.
            cutoff = node.t0 - cfg.time_win
            while self._window and self._window[0].t1 < cutoff:
                self._window.popleft()
                self._retired_since_sweep += 1
        self.stats.max_live = max(self.stats.max_live, len(self._live))
        if self._retired_since_sweep >= self._sweep_every:
            return self._sweep()
        return []

    def flush(self) -> list[list[tuple[Fragment, Mapping[str, Any]]]]:
        """End of stream: every remaining trajectory."""
        self._window.clear()
        return self._sweep()

    @property
    def live(self) -> int:
        """Fragments currently held (not yet emitted)."""
        return len(self._live)

    # ----------------------------------------------------------- finality
    def _sweep(self) -> list[list[tuple[Fragment, Mapping[str, Any]]]]:
        """Emit every chain whose fragments lie outside the alternating closure of the window, and every
        chain whose newest fragment ended more than `path_timeout` before the latest arrival."""
        self._retired_since_sweep = 0
        as_pred: set[_Node] = set(self._window)   # may still gain or change a successor
        as_succ: set[_Node] = set()               # may still lose or change a predecessor
        stack = list(self._window)
        while stack:
            g = stack.pop()
            v = g.succ
            if v is None or v in as_succ:
                continue
            as_succ.add(v)
            for u in v.out:
                if u not in as_pred:
                    as_pred.add(u)
                    stack.append(u)
        paths = []
        expired = self._last_t1 - self.config.path_timeout
        for node in list(self._live):
            if node.pred is not None or node not in self._live:
                continue
            chain = [node]
            while chain[-1].succ is not None:
                chain.append(chain[-1].succ)
            if any(n in as_pred or n in as_succ for n in chain):
                if chain[-1].t1 >= expired:
                    continue
                self.stats.timed_out += 1
            paths.append([(n.frag, n.doc) for n in chain])
            for n in chain:
                del self._live[n]
                for x in n.inn:  # nothing live can reach n again; drop the references
                    x.out.pop(n, None)
                for g in n.out:
                    g.inn.pop(n, None)
                n.out = {}
                n.inn = {}
        return paths

    # ------------------------------------------------------------- scoring
    def _candidates(self, node: _Node) -> list[_Node]:
        """Eligible fragments whose end lies in [node.t0 - TIME_WIN, node.t0] (real gap gate)."""
        out = []
        lo = node.t0 - self.config.time_win
        for g in reversed(self._window):  # newest first; the window is sorted by end time
            if g.t1 > node.t0:
                continue
            if g.t1 < lo:
                break
            out.append(g)
        return out

    def _score(self, node: _Node, candidates: list[_Node]) -> None:
        cfg = self.config
        start = time.perf_counter()
        costs = np.asarray(self.cost_fn.compute_costs([g.doc for g in candidates], node.doc,
                                                      cfg.time_win, cfg.cost_param), dtype=np.float64)
        elapsed = time.perf_counter() - start
        if costs.shape != (len(candidates),):
            raise ValueError(f"{type(self.cost_fn).__name__}.compute_costs returned shape {costs.shape} "
                             f"for {len(candidates)} candidates")
        self.stats.cost_pairs += len(candidates)
        self.stats.cost_batches += 1
        self.stats.cost_seconds += elapsed
        if self._on_cost_batch is not None:
            self._on_cost_batch(len(candidates), elapsed)
        for g, cost in zip(candidates, costs.tolist()):
            if cost <= cfg.stitch_thresh:  # NaN compares false: no edge
                weight = cfg.margin(cost)
                node.out[g] = weight
                g.inn[node] = weight
                self.edges.append(StitchEdge(g.frag.id, node.frag.id, cost, weight))
                self.stats.edges += 1

    # ------------------------------------------------------ augmentation
    def _augment(self, new: _Node) -> None:
        """Apply the best alternating path from `new`, if it gains anything.

        States are fragments acting as successors. From `x` (gain d) a candidate predecessor `g`
        that is not x's current predecessor is taken for `w(x, g)`; if `g` already has a successor
        `v`, `v` loses it (`- w(v, g)`) and continues from `v`. A path ends at a `g` without a
        successor, or at any `v` that stays without predecessor. Since the matching before `new`
        arrived was optimal, the residual graph has no positive cycle, so label correcting finds the
        best path and the result is again optimal (unlike the reference, which only follows steps
        with a positive delta each).
        """
        dist: dict[_Node, float] = {new: 0.0}
        parent: dict[_Node, tuple[_Node, _Node]] = {}
        queue = deque([new])
        queued = {new}
        while queue:
            x = queue.popleft()
            queued.discard(x)
            d = dist[x]
            for g, w in x.out.items():
                v = g.succ
                if v is None or v is x:
                    continue
                gain = d + w - v.out[g]
                if gain > dist.get(v, -math.inf) + _GAIN_EPS:
                    dist[v] = gain
                    parent[v] = (x, g)
                    if v not in queued:
                        queued.add(v)
                        queue.append(v)
        best_gain = _GAIN_EPS
        best: tuple[_Node, _Node | None] | None = None
        for x, d in dist.items():
            if x is not new and d > best_gain:  # x stays without predecessor
                best_gain, best = d, (x, None)
            for g, w in x.out.items():
                if g.succ is None and d + w > best_gain:  # g had no successor
                    best_gain, best = d + w, (x, g)
        if best is None:
            return
        end, free = best
        steps: list[tuple[_Node, _Node]] = []
        if free is not None:
            steps.append((end, free))
        else:
            end.pred = None
        cur = end
        while cur is not new:
            px, pg = parent[cur]
            steps.append((px, pg))
            cur = px
        for x, g in steps:
            x.pred = g
            g.succ = x
        self.stats.objective += best_gain
        self.stats.augmentations += 1


# --------------------------------------------------------------------------- offline
def candidate_edges(items: Sequence[tuple[Fragment, Mapping[str, Any]]], cost_fn: StitchCostFunction,
                    config: StitchConfig, stats: StitchStats | None = None) -> list[StitchEdge]:
    """Every pair with real gap in [0, TIME_WIN] and cost <= stitch_thresh, one batch call per fragment.

    Parameters
    ----------
    items : `(Fragment, document)` pairs of one direction, any order.
    cost_fn, config : as for `OnlineStitcher`.
    stats : optional counters to update (cost pairs, batches, seconds, edges).
    """
    order = sorted(range(len(items)), key=lambda i: items[i][0].last_timestamp)
    ends = [items[i][0].last_timestamp for i in order]
    edges: list[StitchEdge] = []
    for i in order:
        frag, doc = items[i]
        lo = bisect.bisect_left(ends, frag.first_timestamp - config.time_win)
        hi = bisect.bisect_right(ends, frag.first_timestamp)
        cands = [order[j] for j in range(lo, hi) if order[j] != i]
        if not cands:
            continue
        start = time.perf_counter()
        costs = np.asarray(cost_fn.compute_costs([items[j][1] for j in cands], doc, config.time_win,
                                                 config.cost_param), dtype=np.float64)
        if stats is not None:
            stats.cost_seconds += time.perf_counter() - start
            stats.cost_pairs += len(cands)
            stats.cost_batches += 1
        for j, cost in zip(cands, costs.tolist()):
            if cost <= config.stitch_thresh:
                edges.append(StitchEdge(items[j][0].id, frag.id, cost, config.margin(cost)))
    if stats is not None:
        stats.edges += len(edges)
    return edges


def solve_assignment(edges: Iterable[StitchEdge]) -> tuple[list[StitchEdge], float]:
    """Maximum-margin links: each fragment at most one successor and one predecessor.

    Solved exactly per connected component as a rectangular assignment (successors x predecessors,
    missing pairs worth 0), with `scipy.optimize.linear_sum_assignment` when scipy is importable and
    a numpy Hungarian otherwise.

    Returns
    -------
    (links, objective) : the chosen edges (positive margin only) and their total margin.
    """
    edges = [e for e in edges if e.weight > 0]
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for e in edges:
        ra, rb = find(e.pred), find(e.succ)
        if ra != rb:
            parent[ra] = rb
    groups: dict[str, list[StitchEdge]] = {}
    for e in edges:
        groups.setdefault(find(e.pred), []).append(e)
    links: list[StitchEdge] = []
    for group in groups.values():
        links.extend(_assign_component(group))
    return links, float(sum(e.weight for e in links))


def _assign_component(edges: list[StitchEdge]) -> list[StitchEdge]:
    if len(edges) == 1:
        return edges
    succs = sorted({e.succ for e in edges})
    preds = sorted({e.pred for e in edges})
    row = {s: i for i, s in enumerate(succs)}
    col = {p: j for j, p in enumerate(preds)}
    benefit = np.zeros((len(succs), len(preds)))
    best: dict[tuple[int, int], StitchEdge] = {}
    for e in edges:
        key = (row[e.succ], col[e.pred])
        if key not in best or e.weight > best[key].weight:
            best[key] = e
            benefit[key] = e.weight
    rows, cols = _linear_sum_assignment_max(benefit)
    return [best[(r, c)] for r, c in zip(rows, cols) if (r, c) in best]


def _linear_sum_assignment_max(benefit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        from scipy.optimize import linear_sum_assignment  # optional: faster, same optimum
    except ImportError:
        return hungarian_max(benefit)
    return linear_sum_assignment(benefit, maximize=True)


def hungarian_max(benefit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-benefit rectangular assignment (numpy fallback for scipy's linear_sum_assignment).

    The shortest-augmenting-path Hungarian method with potentials, O(n^2 m) for an n x m matrix,
    n <= m (the matrix is transposed otherwise). Returns row and column indices like scipy.
    """
    benefit = np.asarray(benefit, dtype=np.float64)
    transposed = benefit.shape[0] > benefit.shape[1]
    cost = -(benefit.T if transposed else benefit)
    n, m = cost.shape
    if n == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=int)  # p[j]: row (1-based) assigned to column j; column 0 is virtual
    way = np.zeros(m + 1, dtype=int)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            masked = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(masked)) + 1
            delta = masked[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    rows, cols = [], []
    for j in range(1, m + 1):
        if p[j]:
            rows.append(p[j] - 1)
            cols.append(j - 1)
    rows_a, cols_a = np.asarray(rows, dtype=int), np.asarray(cols, dtype=int)
    if transposed:
        rows_a, cols_a = cols_a, rows_a
    order = np.argsort(rows_a, kind="stable")
    return rows_a[order], cols_a[order]


def chains_from_links(ids: Sequence[str], links: Iterable[StitchEdge]) -> list[list[str]]:
    """Group fragment ids into trajectories (each a time-ordered id list) from chosen links."""
    succ = {e.pred: e.succ for e in links}
    has_pred = set(succ.values())
    paths = []
    for fid in ids:
        if fid in has_pred:
            continue
        path = [fid]
        while path[-1] in succ:
            path.append(succ[path[-1]])
        paths.append(path)
    return paths


def offline_stitch(items: Sequence[tuple[Fragment, Mapping[str, Any]]], cost_fn: StitchCostFunction,
                   config: StitchConfig) -> tuple[list[list[tuple[Fragment, Mapping[str, Any]]]],
                                                  list[StitchEdge], StitchStats]:
    """Exact optimum of the stitch objective for one direction.

    Returns
    -------
    (trajectories, edges, stats) : trajectories as lists of `(Fragment, document)` in time order,
    every candidate edge (for comparisons), and counters with the optimal `objective`.
    """
    stats = StitchStats(fragments=len(items))
    stats.long_fragments = sum(1 for f, _ in items if f.duration > config.max_fragment_duration)
    edges = candidate_edges(items, cost_fn, config, stats)
    links, objective = solve_assignment(edges)
    stats.objective = objective
    by_id = {f.id: (f, d) for f, d in items}
    ordered = sorted(by_id, key=lambda fid: by_id[fid][0].last_timestamp)
    paths = [[by_id[fid] for fid in chain] for chain in chains_from_links(ordered, links)]
    return paths, edges, stats


class RecordedCostFunction(StitchCostFunction):
    """Replays costs recorded from another run: `(pred_id, succ_id) -> cost`, no edge otherwise.

    Lets the online stitcher be measured on exactly the edges an offline run scored (and the
    reverse) without calling the real cost function twice.
    """

    name = "recorded"

    def __init__(self, edges: Iterable[StitchEdge]):
        self._costs = {(e.pred, e.succ): e.cost for e in edges}

    def compute_cost(self, track1, track2, TIME_WIN, param=None) -> float:
        return self._costs.get((fragment_id(track1), fragment_id(track2)), INVALID_COST)
