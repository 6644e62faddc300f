"""Pair mining: the candidate pairs exactly as the stitcher queries them, labelled from ground truth.

For every fragment B, every earlier fragment A of the same direction whose gap `B.t[0] - A.t[-1]` is in
`[0, TIME_WIN]` is a candidate. Label 1: A and B belong to the same GT vehicle (majority `gt_ids`) and B
is the next fragment of that vehicle after A. Same-vehicle pairs that skip a fragment get label -1: they
are left out of training and counted apart in evaluation. Everything else is label 0. The natural
class ratio is kept; training may reweight, calibration and reports use it as is (FEATURES.md §4).

Fragments go through `prepare_fragments`, the same feed pp_lite uses (validation, the <= 3-sample rule,
25 Hz resampling), so features are computed on what the stitcher will see (no train/serve drift).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from runtime.bhattacharyya import BhattacharyyaCostFunction
from runtime.features import FEATURE_NAMES, FeatureExtractor
from runtime.feed import prepare_fragments
from runtime.files import atomic_write_bytes, atomic_write_text

from .io import gt_id_of, load_fragments

__all__ = [
    "ScenarioPairs",
    "mine_pairs",
    "concat_pairs",
    "DatasetSpec",
    "load_dataset",
    "MINING_VERSION",
    "DEFAULT_TIME_WIN",
]

MINING_VERSION = "pairs-v2"  # v2 features: vel_ratio speed floor
DEFAULT_TIME_WIN = 15.0
# Models this project trains read positions, times and dimensions only (runtime.features, v3): the
# tracker-specific fields change between tracker versions and a cost must not depend on them.
DEFAULT_SCHEMA = "i24-47-v3"
# Splits whose scenario instances draw their tracker-error model from the simulator's ERROR_RANGES
# (domain randomisation); the test split stays on the calibrated presets, the nominal tracker.
RANDOMIZED_SPLITS = ("train", "val", "cal")
# The Bhattacharyya cone parameters of the reference stitcher_args (REFERENCE.md §2).
BHAT_PARAM = {"cx": 0.2, "mx": 0.1, "cy": 2.0, "my": 0.1}
# What ranks training negatives as hard when they are subsampled (`training.train.subsample_negatives`):
# the Bhattacharyya cost, or the score of the MLP a run starts from.
HARD_NEGATIVES = ("bhattacharyya", "warm-start")


@dataclass
class ScenarioPairs:
    """Candidate pairs of one or more scenario instances, with per-pair arrays aligned by row.

    `docs` is the index space of `a` (earlier fragment) and `b` (later fragment): the prepared
    (validated, resampled) fragment documents. `source[k]` indexes `names` (the scenario instance of
    pair k). `label` is 1 / 0 / -1 (same vehicle, skipping a fragment).
    """

    names: list[str]
    docs: list[dict]
    gt: list[str | None]
    a: np.ndarray
    b: np.ndarray
    label: np.ndarray
    gap: np.ndarray
    features: np.ndarray
    bhat: np.ndarray
    source: np.ndarray
    dropped_short: int = 0
    feature_names: tuple = tuple(FEATURE_NAMES)
    schema: str = DEFAULT_SCHEMA  # the feature schema of `features`; sequence windows follow it too

    def __len__(self) -> int:
        return int(self.a.shape[0])

    @property
    def trainable(self) -> np.ndarray:
        """Mask of pairs used for training and calibration (label 0 or 1)."""
        return self.label >= 0

    def select(self, mask: np.ndarray) -> "ScenarioPairs":
        """The same fragments with a subset of the pairs."""
        return ScenarioPairs(self.names, self.docs, self.gt, self.a[mask], self.b[mask], self.label[mask],
                             self.gap[mask], self.features[mask], self.bhat[mask], self.source[mask],
                             self.dropped_short, self.feature_names, self.schema)

    def for_source(self, name: str) -> "ScenarioPairs":
        return self.select(self.source == self.names.index(name))

    def summary(self) -> dict:
        lab = self.label
        pos, neg, skip = int((lab == 1).sum()), int((lab == 0).sum()), int((lab == -1).sum())
        return {"scenarios": list(self.names), "fragments": len(self.docs), "pairs": len(self),
                "positives": pos, "negatives": neg, "skipping_same_vehicle": skip,
                "neg_per_pos": round(neg / pos, 2) if pos else None, "dropped_short_fragments": self.dropped_short}


def _candidate_pairs(docs: Sequence[dict], time_win: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (a, b) with same direction and 0 <= b.t0 - a.t_end <= time_win, grouped by b."""
    starts = np.array([d["timestamp"][0] for d in docs], dtype=np.float64)
    ends = np.array([d["timestamp"][-1] for d in docs], dtype=np.float64)
    dirs = np.array([d["direction"] for d in docs], dtype=np.int64)
    a_out, b_out = [], []
    for direction in (1, -1):
        idx = np.flatnonzero(dirs == direction)
        if idx.size == 0:
            continue
        order = idx[np.argsort(ends[idx], kind="stable")]
        sorted_ends = ends[order]
        for b in idx:
            lo = np.searchsorted(sorted_ends, starts[b] - time_win, side="left")
            hi = np.searchsorted(sorted_ends, starts[b], side="right")
            cand = order[lo:hi]
            cand = cand[cand != b]
            if cand.size:
                a_out.append(cand)
                b_out.append(np.full(cand.size, b, dtype=np.int64))
    if not a_out:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    a = np.concatenate(a_out)
    b = np.concatenate(b_out)
    return a, b, starts[b] - ends[a]


def _labels(docs: Sequence[dict], gt: Sequence[str | None], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 for consecutive fragments of one vehicle, -1 for same-vehicle pairs that skip one, 0 otherwise."""
    by_vehicle: dict[str, list[int]] = {}
    for i, g in enumerate(gt):
        if g is not None:
            by_vehicle.setdefault(g, []).append(i)
    successor: dict[int, int] = {}
    for members in by_vehicle.values():
        members.sort(key=lambda i: (docs[i]["timestamp"][0], docs[i]["timestamp"][-1]))
        for k in range(len(members) - 1):
            successor[members[k]] = members[k + 1]
    label = np.zeros(a.shape[0], dtype=np.int8)
    for k, (ia, ib) in enumerate(zip(a.tolist(), b.tolist())):
        if gt[ia] is not None and gt[ia] == gt[ib]:
            label[k] = 1 if successor.get(ia) == ib else -1
    return label


def mine_pairs(raw_docs: Sequence[dict], name: str, time_win: float = DEFAULT_TIME_WIN,
               schema: str = DEFAULT_SCHEMA) -> ScenarioPairs:
    """Mine and label the stitcher's candidate pairs of one scenario instance.

    Parameters
    ----------
    raw_docs : RAW fragment documents (I-24 schema, with `gt_ids`).
    name : a label for the instance, e.g. "ii/seed13".
    time_win : the stitcher's TIME_WIN (s).
    schema : engineered-feature schema computed for every pair.
    """
    docs, report = prepare_fragments(raw_docs)
    gt = [gt_id_of(d) for d in docs]
    a, b, gap = _candidate_pairs(docs, time_win)
    label = _labels(docs, gt, a, b)
    extractor = FeatureExtractor(schema, cache_size=max(16, len(docs) + 1))
    bhat_fn = BhattacharyyaCostFunction(cache_size=max(16, len(docs) + 1))
    features = np.zeros((a.shape[0], len(FEATURE_NAMES)), dtype=np.float64)
    bhat = np.zeros(a.shape[0], dtype=np.float64)
    # pairs are grouped by b: one batch call per new fragment, as the stitcher does
    boundaries = np.flatnonzero(np.diff(b)) + 1
    for rows in np.split(np.arange(a.shape[0]), boundaries):
        if rows.size == 0:
            continue
        doc_b = docs[b[rows[0]]]
        docs_a = [docs[i] for i in a[rows]]
        features[rows] = extractor.batch(docs_a, doc_b)
        bhat[rows] = bhat_fn.compute_costs(docs_a, doc_b, time_win, BHAT_PARAM)
    return ScenarioPairs([name], docs, gt, a.astype(np.int64), b.astype(np.int64), label, gap,
                         features, bhat, np.zeros(a.shape[0], dtype=np.int64), report["dropped_short"],
                         schema=schema)


def concat_pairs(parts: Sequence[ScenarioPairs]) -> ScenarioPairs:
    """Concatenate pair sets, offsetting fragment indices and source ids."""
    if not parts:
        raise ValueError("nothing to concatenate")
    schemas = {part.schema for part in parts}
    if len(schemas) > 1:
        raise ValueError(f"cannot concatenate pairs of different feature schemas: {', '.join(sorted(schemas))}")
    names, docs, gt = [], [], []
    cols = {k: [] for k in ("a", "b", "label", "gap", "features", "bhat", "source")}
    dropped = 0
    for part in parts:
        off_doc, off_src = len(docs), len(names)
        names += part.names
        docs += part.docs
        gt += part.gt
        cols["a"].append(part.a + off_doc)
        cols["b"].append(part.b + off_doc)
        cols["source"].append(part.source + off_src)
        for k in ("label", "gap", "features", "bhat"):
            cols[k].append(getattr(part, k))
        dropped += part.dropped_short
    return ScenarioPairs(names, docs, gt, *(np.concatenate(cols[k]) for k in
                                            ("a", "b", "label", "gap", "features", "bhat", "source")),
                         dropped_short=dropped, schema=parts[0].schema)


# ----------------------------------------------------------------------------------------------------
# Datasets: which scenario instances go into which split, and an on-disk cache of mined pairs.

@dataclass
class DatasetSpec:
    """Scenario instances per split. Splits are by instance (seed), never by pair: no vehicle is on two sides.

    Default: train on seeds 11-12, validate (early stopping) on 13, calibrate on 14, test on 15, each with
    all three presets, so scenario ii is always in the test report. The instances of the `randomized`
    splits draw their tracker-error model from the simulator's ranges (seeded by the seed), so a model
    is fitted, stopped and calibrated across trackers, not on one simulated tracker.
    """

    presets: tuple = ("i", "ii", "iii")
    train_seeds: tuple = (11, 12)
    val_seeds: tuple = (13,)
    cal_seeds: tuple = (14,)
    test_seeds: tuple = (15,)
    time_win: float = DEFAULT_TIME_WIN
    schema: str = DEFAULT_SCHEMA
    duration: float | None = None  # override the presets' durations (e.g. short runs in tests)
    real_data_dir: str | None = None  # RAW_{s}.json files to split by vehicle instead of simulated seeds
    randomized: tuple = RANDOMIZED_SPLITS

    def __post_init__(self):
        unknown = [s for s in self.randomized if s not in SPLITS]
        if unknown:
            raise ValueError(f"randomized: unknown split(s) {', '.join(map(repr, unknown))}; splits are "
                             f"{', '.join(SPLITS)}")

    def instances(self, split: str) -> list[tuple[str, int]]:
        seeds = getattr(self, f"{split}_seeds")
        return [(p, s) for s in seeds for p in self.presets]

    def describe(self) -> dict:
        if self.real_data_dir:
            return {"source": "files", "data_dir": os.path.abspath(self.real_data_dir), "split": "by vehicle",
                    "presets": list(self.presets), "time_win": self.time_win, "schema": self.schema,
                    "mining_version": MINING_VERSION}
        return {"source": "simulated", "presets": list(self.presets), "train_seeds": list(self.train_seeds),
                "val_seeds": list(self.val_seeds), "cal_seeds": list(self.cal_seeds),
                "test_seeds": list(self.test_seeds), "time_win": self.time_win, "schema": self.schema,
                "duration": self.duration, "randomized": list(self.randomized), "mining_version": MINING_VERSION}


SPLITS = ("train", "val", "cal", "test")


def _cache_path(data_dir: str, preset: str, seed: int, spec: DatasetSpec, randomize: bool = False) -> str:
    from . import simulate  # the instance's simulator parameters are part of its identity

    key = json.dumps([MINING_VERSION, preset, int(seed), float(spec.time_win), spec.schema,
                      None if spec.duration is None else float(spec.duration),
                      repr(simulate.resolve_preset(preset, seed, randomize=randomize)),
                      getattr(simulate, "SIMULATOR_VERSION", None)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return os.path.join(data_dir, "pairs", f"{preset}_seed{seed}_{digest}")


def _save_cached(path: str, sp: ScenarioPairs) -> None:
    import io as _io
    buf = _io.BytesIO()
    np.savez(buf, a=sp.a, b=sp.b, label=sp.label, gap=sp.gap, features=sp.features, bhat=sp.bhat)
    atomic_write_text(path + ".docs.json", json.dumps({"names": sp.names, "gt": sp.gt, "docs": sp.docs,
                                                       "dropped_short": sp.dropped_short}))
    atomic_write_bytes(path + ".npz", buf.getvalue())


def _load_cached(path: str, schema: str) -> ScenarioPairs | None:
    if not (os.path.exists(path + ".npz") and os.path.exists(path + ".docs.json")):
        return None
    with np.load(path + ".npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    with open(path + ".docs.json", encoding="utf-8") as fh:
        meta = json.load(fh)
    n = arrays["a"].shape[0]
    return ScenarioPairs(meta["names"], meta["docs"], meta["gt"], arrays["a"], arrays["b"], arrays["label"],
                         arrays["gap"], arrays["features"], arrays["bhat"], np.zeros(n, dtype=np.int64),
                         meta["dropped_short"], schema=schema)


def scenario_instance(data_dir: str, preset: str, seed: int, spec: DatasetSpec, progress: bool = True,
                      randomize: bool = False) -> ScenarioPairs:
    """Mined pairs of one simulated instance, simulating and mining on first use, cached under data_dir.

    `randomize`: the instance's tracker-error model is drawn from the simulator's ranges (seeded)."""
    path = _cache_path(data_dir, preset, seed, spec, randomize)
    cached = _load_cached(path, spec.schema)
    if cached is not None:
        return cached
    from .simulate import simulate  # the simulator is only needed when the cache is cold

    if progress:
        print(f"  simulating and mining {preset}/seed{seed} ...", file=sys.stderr, flush=True)
    _, raw = simulate(preset, seed, duration=spec.duration, randomize=randomize)
    sp = mine_pairs(raw, f"{preset}/seed{seed}", spec.time_win, spec.schema)
    _save_cached(path, sp)
    return sp


def load_dataset(spec: DatasetSpec, data_dir: str = "data", progress: bool = True) -> dict[str, ScenarioPairs]:
    """The four splits (train, val, cal, test), each a concatenated `ScenarioPairs`.

    Simulated instances by seed (default), or, with `spec.real_data_dir`, RAW files split by vehicle.
    """
    if spec.real_data_dir:
        return load_real_dataset(spec.real_data_dir, spec.presets, spec.time_win, spec.schema)
    from tqdm import tqdm

    todo = [(split, p, s) for split in SPLITS for p, s in spec.instances(split)]
    parts: dict[str, list[ScenarioPairs]] = {split: [] for split in SPLITS}
    # one bar with ETA over the scenario instances (cached ones take milliseconds)
    with tqdm(todo, desc="mining pairs", unit="scenario", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for split, p, s in bar:
            bar.set_postfix_str(f"{split} {p}/seed{s}")
            parts[split].append(scenario_instance(data_dir, p, s, spec, False, randomize=split in spec.randomized))
    return {split: concat_pairs(parts[split]) for split in SPLITS}


def load_real_dataset(data_dir: str, presets: Iterable[str] = ("i", "ii", "iii"), time_win: float = DEFAULT_TIME_WIN,
                      schema: str = DEFAULT_SCHEMA, fractions=(0.6, 0.1, 0.15, 0.15), seed: int = 0) -> dict[str, ScenarioPairs]:
    """Splits from real (or any) `RAW_{s}.json` files in `data_dir`, by vehicle.

    Each GT vehicle is assigned to one split at random (seeded); a pair is kept in a split only when both of
    its fragments' vehicles are in that split, so no vehicle is on two sides.
    """
    rng = np.random.default_rng(seed)
    per_split: dict[str, list[ScenarioPairs]] = {s: [] for s in SPLITS}
    for preset in presets:
        path = os.path.join(data_dir, f"RAW_{preset}.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found (expected I-24 RAW_{{s}}.json files in {data_dir})")
        sp = mine_pairs(load_fragments(path), preset, time_win, schema)
        vehicles = sorted({g for g in sp.gt if g is not None})
        which = dict(zip(vehicles, rng.choice(len(SPLITS), size=len(vehicles), p=np.asarray(fractions) / sum(fractions))))
        frag_split = np.array([which.get(g, -1) if g is not None else -1 for g in sp.gt])
        sa, sb = frag_split[sp.a], frag_split[sp.b]
        for k, split in enumerate(SPLITS):
            per_split[split].append(sp.select((sa == k) & (sb == k)))
    return {s: concat_pairs(parts) for s, parts in per_split.items()}
