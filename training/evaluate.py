"""Tracking quality the I-24 way: 25 Hz frames, footprint IoU >= 0.3, CLEAR and ID metrics (REFERENCE.md §6).

`evaluate_tracking(gt_docs, rec_docs)` returns MOTA, MOTP (mean IoU of matches), IDF1, precision,
recall, FP, FN, IDsw, fragmentations and the per-GT ratios; `evaluate --gt GT.json --rec REC.json`
prints and saves them. Matching follows py-motmetrics' `MOTAccumulator.update` rule for rule (carry
established pairs forward, then a minimum-distance assignment, SWITCH/TRANSFER bookkeeping); the
default engine reproduces its event table with array code and motmetrics computes the metrics from
it, which is event-for-event identical (tested) and an order of magnitude faster on a 60 s
scenario. `engine="motmetrics"` feeds motmetrics' own accumulator instead.

motmetrics 1.4 under pandas 3: its event table stores ids as floats, so string ids fail; both engines
pass integer ids (document index). Its `num_fragmentations` scans the table once per object (seconds
on a full scenario) and is computed here by one sort with the same definition (tested).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from runtime.files import atomic_write_bytes, atomic_write_text
from runtime.fragment import Fragment, FragmentError

__all__ = ["evaluate_tracking", "check_inputs", "frame_boxes", "iou_matrix", "MetricsTable", "format_metrics",
           "plot_time_space", "main"]

FRAME_HZ = 25.0
IOU_THRESHOLD = 0.3
# Box sizes when a document has no length/width (REFERENCE.md §6.1).
DEFAULT_LENGTH_FT = 5.0
DEFAULT_WIDTH_FT = 2.0

# motmetrics' event categories, in its categorical order.
EVENT_TYPES = ("RAW", "FP", "MISS", "SWITCH", "MATCH", "TRANSFER", "ASCEND", "MIGRATE")
_RAW, _FP, _MISS, _SWITCH, _MATCH, _TRANSFER, _ASCEND, _MIGRATE = range(8)
ENGINES = ("fast", "motmetrics")

# Printed and saved in this order: (key, label, format).
METRIC_ROWS = (
    ("mota", "MOTA", "{:.3f}"),
    ("motp", "MOTP (mean IoU)", "{:.3f}"),
    ("idf1", "IDF1", "{:.3f}"),
    ("precision", "Precision", "{:.3f}"),
    ("recall", "Recall", "{:.3f}"),
    ("fp", "FP", "{:d}"),
    ("fn", "FN", "{:d}"),
    ("idsw", "IDsw", "{:d}"),
    ("fragmentations", "Fragmentations", "{:d}"),
    ("fgmt_per_gt", "Fgmt/GT", "{:.2f}"),
    ("sw_per_gt", "Sw/GT", "{:.2f}"),
    ("traj_per_gt", "Trajectories/GT", "{:.2f}"),
    ("gt_trajectories", "GT trajectories", "{:d}"),
    ("rec_trajectories", "Tracker trajectories", "{:d}"),
    ("hota", "HOTA", "{:.3f}"),
)


# --------------------------------------------------------------------------- frames and boxes
@dataclass
class _Boxes:
    """Per-sample boxes of a document set, sorted by (frame, object)."""

    frame: np.ndarray
    obj: np.ndarray
    x: np.ndarray
    y: np.ndarray
    length: np.ndarray
    width: np.ndarray
    direction: np.ndarray      # per object
    ids: list                  # per object: the document `_id` as a string
    t_ref: float = 0.0

    def __len__(self) -> int:
        return int(self.frame.shape[0])


def _dimension(values: np.ndarray | None, default: float, n: int) -> np.ndarray:
    return np.full(n, default) if values is None else values


def frame_boxes(docs: Sequence[Mapping[str, Any]], t_ref: float, hz: float = FRAME_HZ, what: str = "REC") -> _Boxes:
    """Convert trajectories to per-frame footprint boxes (REFERENCE.md §6.1 conventions).

    Parameters
    ----------
    docs : GT, RAW or REC documents (validated here; errors name the `_id` and field).
    t_ref : the time of frame 0 (the earliest timestamp of GT and tracker together).
    hz : frame rate; frame = round((t - t_ref) * hz).
    what : "GT" or "REC", for error messages.

    Returns
    -------
    Boxes `[x, y, length, width]` per (frame, object), centred on (x, y) like the reference
    evaluator; the last sample wins when several fall on one frame. Missing length/width are 5 / 2 ft.
    """
    frames, objs, xs, ys, ls, ws, dirs, ids = [], [], [], [], [], [], [], []
    for k, doc in enumerate(docs):
        try:
            frag = Fragment.from_document(doc, k)
        except FragmentError as exc:
            raise FragmentError(exc.fragment_id, exc.field, f"{exc.problem} [{what}]", k) from None
        f = np.rint((frag.t - t_ref) * hz).astype(np.int64)
        keep = np.ones(f.shape[0], dtype=bool)
        keep[:-1] = f[1:] != f[:-1]  # timestamps increase, so same-frame samples are neighbours
        frames.append(f[keep])
        objs.append(np.full(int(keep.sum()), k, dtype=np.int64))
        xs.append(frag.x[keep])
        ys.append(frag.y[keep])
        ls.append(_dimension(frag.length, DEFAULT_LENGTH_FT, frag.n)[keep])
        ws.append(_dimension(frag.width, DEFAULT_WIDTH_FT, frag.n)[keep])
        dirs.append(frag.direction)
        ids.append(frag.id)
    if not frames:
        empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0)
        return _Boxes(empty_i, empty_i, empty_f, empty_f, empty_f, empty_f, np.zeros(0, dtype=int), [], t_ref)
    frame = np.concatenate(frames)
    obj = np.concatenate(objs)
    order = np.lexsort((obj, frame))
    return _Boxes(frame[order], obj[order], np.concatenate(xs)[order], np.concatenate(ys)[order],
                  np.concatenate(ls)[order], np.concatenate(ws)[order], np.asarray(dirs), ids, t_ref)


def _earliest_time(*doc_sets: Sequence[Mapping[str, Any]]) -> float:
    t = math.inf
    for docs in doc_sets:
        for doc in docs:
            ts = doc.get("timestamp") if isinstance(doc, Mapping) else None
            if ts is not None and len(ts):
                t = min(t, float(ts[0]))
    return 0.0 if t == math.inf else t


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Axis-aligned IoU of centred boxes `[x, y, length, width]`, rows of `a` against rows of `b`."""
    ax0, ax1 = a[:, 0] - a[:, 2] / 2, a[:, 0] + a[:, 2] / 2
    ay0, ay1 = a[:, 1] - a[:, 3] / 2, a[:, 1] + a[:, 3] / 2
    bx0, bx1 = b[:, 0] - b[:, 2] / 2, b[:, 0] + b[:, 2] / 2
    by0, by1 = b[:, 1] - b[:, 3] / 2, b[:, 1] + b[:, 3] / 2
    iw = np.minimum(ax1[:, None], bx1[None, :]) - np.maximum(ax0[:, None], bx0[None, :])
    ih = np.minimum(ay1[:, None], by1[None, :]) - np.maximum(ay0[:, None], by0[None, :])
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return inter / np.maximum(union, 1e-10)


# --------------------------------------------------------------------------- matching
class _EventLog:
    """motmetrics' event table as growing arrays (FrameId, Event, Type, OId, HId, D)."""

    def __init__(self):
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, frame: int, types, oids, hids, dists) -> None:
        types = np.asarray(types, dtype=np.int8)
        n = types.shape[0]
        if n:
            self.parts.append((np.full(n, frame, dtype=np.int64), types, np.asarray(oids, dtype=float),
                               np.asarray(hids, dtype=float), np.asarray(dists, dtype=float)))

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.parts:
            return {k: np.zeros(0) for k in ("FrameId", "Event", "Type", "OId", "HId", "D")}
        frame, types, oids, hids, dists = (np.concatenate(c) for c in zip(*self.parts))
        # Event numbers restart at 0 in every frame, as in motmetrics.
        starts = np.flatnonzero(np.r_[True, frame[1:] != frame[:-1]])
        counts = np.diff(np.r_[starts, frame.shape[0]])
        event = np.arange(frame.shape[0]) - np.repeat(starts, counts)
        return {"FrameId": frame, "Event": event, "Type": types, "OId": oids, "HId": hids, "D": dists}


class _FastAccumulator:
    """`motmetrics.MOTAccumulator.update` with integer ids and array bookkeeping, same events, same order."""

    def __init__(self, n_objects: int, n_hypotheses: int):
        self.m = np.full(n_objects, -1, dtype=np.int64)           # object -> hypothesis it is paired with
        self.res_m = np.full(n_hypotheses, -1, dtype=np.int64)    # hypothesis -> last object (assignment step)
        self.last_match = np.zeros(n_objects, dtype=bool)
        self.hyp_seen = np.zeros(n_hypotheses, dtype=bool)
        self.log = _EventLog()
        self.switches: list[tuple[int, int]] = []                 # (frame, object)
        self._hyp_pos = np.full(n_hypotheses, -1, dtype=np.int64)
        from motmetrics.lap import linear_sum_assignment
        self._lsa = linear_sum_assignment

    def update(self, oids: np.ndarray, hids: np.ndarray, dists: np.ndarray, frame: int) -> None:
        log = self.log
        no, nh = oids.shape[0], hids.shape[0]
        finite = np.isfinite(dists)
        vi, vj = np.nonzero(finite)
        used_o = finite.any(axis=1) if nh else np.zeros(no, dtype=bool)
        used_h = finite.any(axis=0) if no else np.zeros(nh, dtype=bool)
        n_raw = 1 + vi.shape[0] + int((~used_o).sum()) + int((~used_h).sum())
        log.add(frame, np.zeros(n_raw, dtype=np.int8),
                np.r_[np.nan, oids[vi], oids[~used_o], np.full(int((~used_h).sum()), np.nan)],
                np.r_[np.nan, hids[vj], np.full(int((~used_o).sum()), np.nan), hids[~used_h]],
                np.r_[np.nan, dists[vi, vj], np.full(n_raw - 1 - vi.shape[0], np.nan)])
        o_done = np.zeros(no, dtype=bool)
        h_done = np.zeros(nh, dtype=bool)
        if no and nh:
            # 1. Carry established pairs forward; for a hypothesis wanted twice the first object wins.
            self._hyp_pos[hids] = np.arange(nh)
            prev = self.m[oids]
            cand_j = np.where(prev >= 0, self._hyp_pos[np.maximum(prev, 0)], -1)
            cand_j = np.where((prev >= 0) & (cand_j >= 0) & (hids[np.maximum(cand_j, 0)] == prev), cand_j, -1)
            ok = cand_j >= 0
            ok[ok] = finite[np.flatnonzero(ok), cand_j[ok]]
            ci = np.flatnonzero(ok)
            cj = cand_j[ci]
            _, first = np.unique(cj, return_index=True)
            keep = np.zeros(ci.shape[0], dtype=bool)
            keep[first] = True
            ci, cj = ci[keep], cj[keep]
            self._hyp_pos[hids] = -1
            if ci.shape[0]:
                o_done[ci] = True
                h_done[cj] = True
                log.add(frame, np.full(ci.shape[0], _MATCH), oids[ci], hids[cj], dists[ci, cj])
                self.last_match[oids[ci]] = True
                self.hyp_seen[hids[cj]] = True
            # 2. Minimum-distance assignment of the rest, with motmetrics' own solver.
            rest = dists.copy()
            rest[o_done, :] = np.nan
            rest[:, h_done] = np.nan
            rows = np.flatnonzero(np.isfinite(rest).any(axis=1))
            if rows.shape[0]:
                cols = np.flatnonzero(np.isfinite(rest[rows]).any(axis=0))
                sub_r, sub_c = self._lsa(rest[np.ix_(rows, cols)])
                for r, c in zip(sub_r.tolist(), sub_c.tolist()):
                    i, j = int(rows[r]), int(cols[c])
                    d = float(rest[i, j])
                    if not math.isfinite(d):
                        continue
                    o, h = int(oids[i]), int(hids[j])
                    types, ev_o, ev_h, ev_d = [], [], [], []
                    is_switch = self.m[o] >= 0 and self.m[o] != h
                    if is_switch and not self.hyp_seen[h]:
                        types.append(_ASCEND)
                    if self.res_m[h] >= 0 and self.res_m[h] != o:
                        if not self.last_match[o]:
                            types.append(_MIGRATE)
                        types.append(_TRANSFER)
                    types.append(_SWITCH if is_switch else _MATCH)
                    log.add(frame, types, [o] * len(types), [h] * len(types), [d] * len(types))
                    if is_switch:
                        self.switches.append((frame, o))
                    self.hyp_seen[h] = True
                    self.last_match[o] = True
                    o_done[i] = True
                    h_done[j] = True
                    self.m[o] = h
                    self.res_m[h] = o
        # 3./4. Misses and false positives.
        miss, fp = oids[~o_done], hids[~h_done]
        if miss.shape[0]:
            log.add(frame, np.full(miss.shape[0], _MISS), miss, np.full(miss.shape[0], np.nan),
                    np.full(miss.shape[0], np.nan))
        if fp.shape[0]:
            log.add(frame, np.full(fp.shape[0], _FP), np.full(fp.shape[0], np.nan), fp, np.full(fp.shape[0], np.nan))


def _events_dataframe(arrays: Mapping[str, np.ndarray]):
    import pandas as pd
    types = pd.Categorical.from_codes(np.asarray(arrays["Type"], dtype=np.int8), categories=list(EVENT_TYPES))
    df = pd.DataFrame({"Type": types, "OId": np.asarray(arrays["OId"], dtype=float),
                       "HId": np.asarray(arrays["HId"], dtype=float), "D": np.asarray(arrays["D"], dtype=float)})
    df.index = pd.MultiIndex.from_arrays([np.asarray(arrays["FrameId"], dtype=np.int64),
                                          np.asarray(arrays["Event"], dtype=np.int64)], names=["FrameId", "Event"])
    return df


@dataclass
class _Matching:
    events: Any                     # motmetrics-format events DataFrame
    switches: list                  # (frame, GT object)
    frames: int
    hota_data: dict | None = None


def _match(gt: _Boxes, rec: _Boxes, iou_threshold: float, engine: str, keep_similarity: bool) -> _Matching:
    """Run the per-frame matching over the union of frames that have any box."""
    frames = np.union1d(gt.frame, rec.frame)
    g_start = np.searchsorted(gt.frame, frames, "left")
    g_end = np.searchsorted(gt.frame, frames, "right")
    r_start = np.searchsorted(rec.frame, frames, "left")
    r_end = np.searchsorted(rec.frame, frames, "right")
    g_box = np.column_stack([gt.x, gt.y, gt.length, gt.width])
    r_box = np.column_stack([rec.x, rec.y, rec.length, rec.width])
    if engine == "fast":
        acc = _FastAccumulator(len(gt.ids), len(rec.ids))
    else:
        import motmetrics as mm
        acc = mm.MOTAccumulator(auto_id=False)
    sim_gt, sim_tr, sim = [], [], []
    for k, frame in enumerate(frames.tolist()):
        gs, ge, rs, re = g_start[k], g_end[k], r_start[k], r_end[k]
        oids, hids = gt.obj[gs:ge], rec.obj[rs:re]
        iou = iou_matrix(g_box[gs:ge], r_box[rs:re]) if (ge > gs and re > rs) else np.zeros((ge - gs, re - rs))
        dist = np.where(iou >= iou_threshold, 1.0 - iou, np.nan)
        if engine == "fast":
            acc.update(oids, hids, dist, frame)
        else:
            acc.update(oids, hids, dist, frameid=frame)
        if keep_similarity:
            sim_gt.append(oids)
            sim_tr.append(hids)
            sim.append(iou)
    if engine == "fast":
        events = _events_dataframe(acc.log.arrays())
        switches = acc.switches
    else:
        events = acc.events
        sw = events[events.Type == "SWITCH"]
        switches = [(int(f), int(o)) for (f, _), o in zip(sw.index, sw.OId)]
    hota_data = None
    if keep_similarity:
        hota_data = {"gt_ids": sim_gt, "tracker_ids": sim_tr, "similarity_scores": sim,
                     "num_gt_ids": len(gt.ids), "num_tracker_ids": len(rec.ids),
                     "num_gt_dets": len(gt), "num_tracker_dets": len(rec), "num_timesteps": len(frames)}
    return _Matching(events, switches, int(frames.shape[0]), hota_data)


# --------------------------------------------------------------------------- metrics
MOTMETRICS_NAMES = ["mota", "motp", "idf1", "idp", "idr", "precision", "recall", "num_false_positives",
                    "num_misses", "num_switches", "num_fragmentations", "num_objects", "num_matches",
                    "num_unique_objects", "mostly_tracked", "partially_tracked", "mostly_lost", "num_transfer"]


def _fragmentations(events) -> int:
    """motmetrics' `num_fragmentations` (tracked -> missed transitions within each object's tracked span),
    computed with one sort instead of one DataFrame scan per object."""
    noraw = events[events.Type.isin(["FP", "MISS", "SWITCH", "MATCH"])]
    noraw = noraw[noraw.OId.notna()]
    oid = noraw.OId.to_numpy()
    miss = (noraw.Type == "MISS").to_numpy()
    frame = noraw.index.get_level_values(0).to_numpy()
    event = noraw.index.get_level_values(1).to_numpy()
    order = np.lexsort((event, frame, oid))
    oid, miss = oid[order], miss[order]
    total = 0
    bounds = np.flatnonzero(np.r_[True, oid[1:] != oid[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        m = miss[a:b]
        tracked = np.flatnonzero(~m)
        if tracked.shape[0] == 0:
            continue
        span = m[tracked[0]:tracked[-1] + 1].astype(np.int8)
        total += int((np.diff(span) == 1).sum())
    return total


def _compute_metrics(events) -> dict:
    import motmetrics as mm
    mh = mm.metrics.create()
    # num_fragmentations scans the event table once per object in motmetrics; compute it by sorting.
    names = [n for n in MOTMETRICS_NAMES if n != "num_fragmentations"]
    summary = mh.compute(events, metrics=names, name="run")
    row = {name: summary[name].iloc[0] for name in names}
    row["num_fragmentations"] = _fragmentations(events)
    return row


def _hota(data: dict) -> tuple[dict | None, str]:
    """HOTA, DetA, AssA, LocA (means over TrackEval's 19 alphas) when TrackEval is importable."""
    try:
        from trackeval.metrics import HOTA  # optional; not a declared dependency
    except ImportError:
        return None, "trackeval not installed"
    try:
        gt_ids, tr_ids = data["gt_ids"], data["tracker_ids"]
        # TrackEval wants contiguous ids in sorted order (REFERENCE.md §6.3).
        g_map = {v: i for i, v in enumerate(sorted({int(x) for a in gt_ids for x in a}))}
        t_map = {v: i for i, v in enumerate(sorted({int(x) for a in tr_ids for x in a}))}
        seq = {
            "num_timesteps": data["num_timesteps"], "num_gt_dets": data["num_gt_dets"],
            "num_tracker_dets": data["num_tracker_dets"], "num_gt_ids": len(g_map), "num_tracker_ids": len(t_map),
            "gt_ids": [np.array([g_map[int(x)] for x in a], dtype=int) for a in gt_ids],
            "tracker_ids": [np.array([t_map[int(x)] for x in a], dtype=int) for a in tr_ids],
            "similarity_scores": data["similarity_scores"],
        }
        res = HOTA().eval_sequence(seq)
        return {k.lower(): float(np.mean(res[k])) for k in ("HOTA", "DetA", "AssA", "LocA")}, "trackeval HOTA"
    except Exception as exc:  # TrackEval versions differ; HOTA is optional, the CLEAR metrics stand
        return None, f"trackeval failed: {type(exc).__name__}: {exc}"


def evaluate_tracking(gt_docs: Sequence[Mapping[str, Any]], rec_docs: Sequence[Mapping[str, Any]], *,
                      iou_threshold: float = IOU_THRESHOLD, hz: float = FRAME_HZ, engine: str = "fast",
                      hota: bool = True, return_details: bool = False) -> dict:
    """CLEAR and ID metrics of a tracker output against ground truth.

    Parameters
    ----------
    gt_docs : ground-truth trajectories (I-24 schema).
    rec_docs : tracker output: REC trajectories, or RAW fragments evaluated as a tracker.
    iou_threshold : boxes match when footprint IoU >= this (0.3, the I-24 setting).
    hz : frame rate of the evaluation grid.
    engine : "fast" (array reimplementation of motmetrics' matching, identical events) or
        "motmetrics" (motmetrics' MOTAccumulator; slower).
    hota : also compute HOTA with TrackEval when it is importable.
    return_details : add "_details" (switch points for plotting) to the result; not JSON.

    Returns
    -------
    dict
        mota, motp (mean IoU of matches, i.e. 1 - motmetrics' MOTP), idf1, idp, idr, precision,
        recall, fp, fn, idsw, fragmentations (motmetrics' FM), fgmt_per_gt (FM / GT trajectories),
        sw_per_gt, traj_per_gt (tracker / GT trajectories: the reference tables' "Fgmt/GT"),
        gt_trajectories, rec_trajectories, matches, gt_boxes, mostly_tracked, partially_tracked,
        mostly_lost, obj_idsw (GT ids with >= 1 switch), transfers, frames, hota / deta / assa /
        loca (None without TrackEval), evaluator, iou_threshold, seconds.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    start = time.perf_counter()
    t_ref = _earliest_time(gt_docs, rec_docs)
    gt = frame_boxes(gt_docs, t_ref, hz, "GT")
    rec = frame_boxes(rec_docs, t_ref, hz, "REC")
    want_hota = hota and _trackeval_available()
    matching = _match(gt, rec, iou_threshold, engine, keep_similarity=want_hota)
    row = _compute_metrics(matching.events)
    n_gt, n_rec = len(gt.ids), len(rec.ids)

    def ratio(a: float) -> float:
        return float(a) / n_gt if n_gt else float("nan")

    result: dict[str, Any] = {
        "mota": float(row["mota"]),
        "motp": float(1.0 - row["motp"]) if row["num_matches"] else float("nan"),
        "idf1": float(row["idf1"]),
        "idp": float(row["idp"]),
        "idr": float(row["idr"]),
        "precision": float(row["precision"]),
        "recall": float(row["recall"]),
        "fp": int(row["num_false_positives"]),
        "fn": int(row["num_misses"]),
        "idsw": int(row["num_switches"]),
        "fragmentations": int(row["num_fragmentations"]),
        "fgmt_per_gt": ratio(row["num_fragmentations"]),
        "sw_per_gt": ratio(row["num_switches"]),
        "traj_per_gt": ratio(n_rec),
        "gt_trajectories": n_gt,
        "rec_trajectories": n_rec,
        "matches": int(row["num_matches"]),
        "gt_boxes": int(row["num_objects"]),
        "mostly_tracked": int(row["mostly_tracked"]),
        "partially_tracked": int(row["partially_tracked"]),
        "mostly_lost": int(row["mostly_lost"]),
        "obj_idsw": len({o for _, o in matching.switches}),
        "transfers": int(row["num_transfer"]),
        "frames": matching.frames,
        "iou_threshold": iou_threshold,
    }
    hota_values, note = (None, "not requested") if not hota else \
        (_hota(matching.hota_data) if want_hota else (None, "trackeval not installed"))
    for key in ("hota", "deta", "assa", "loca"):
        result[key] = None if hota_values is None else hota_values[key]
    import motmetrics as mm
    result["evaluator"] = (f"py-motmetrics {mm.__version__} CLEAR/ID, IoU >= {iou_threshold:g}, {hz:g} Hz frames, "
                           f"{engine} engine; HOTA: {note}")
    result["seconds"] = time.perf_counter() - start
    if return_details:
        points = []
        for frame, o in matching.switches:
            sel = np.flatnonzero((gt.frame == frame) & (gt.obj == o))
            if sel.shape[0]:
                s = int(sel[0])
                points.append((t_ref + frame / hz, float(gt.x[s]), int(gt.direction[o])))
        result["_details"] = {"switch_points": points, "t_ref": t_ref}
    return result


def _trackeval_available() -> bool:
    try:
        from trackeval.metrics import HOTA  # noqa: F401  optional, not a declared dependency
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- output
class MetricsTable:
    """Rows of named metrics printed as an aligned text table (one column per run)."""

    def __init__(self, runs: Mapping[str, Mapping[str, Any]]):
        self.runs = dict(runs)

    def __str__(self) -> str:
        names = list(self.runs)
        width = max([len(label) for _, label, _ in METRIC_ROWS] + [6])
        col = max([len(n) for n in names] + [9])
        lines = [f"{'metric':<{width}}  " + "  ".join(f"{n:>{col}}" for n in names)]
        for key, label, fmt in METRIC_ROWS:
            cells = [_format(self.runs[n].get(key), fmt) for n in names]
            lines.append(f"{label:<{width}}  " + "  ".join(f"{c:>{col}}" for c in cells))
        return "\n".join(lines)


def _format(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def format_metrics(result: Mapping[str, Any], name: str = "value") -> str:
    """The metrics of one run as a two-column text table."""
    return str(MetricsTable({name: result}))


def plot_time_space(gt_docs: Sequence[Mapping[str, Any]], rec_docs: Sequence[Mapping[str, Any]],
                    switch_points: Sequence[tuple[float, float, int]], path: str | os.PathLike,
                    title: str | None = None) -> None:
    """Time-space diagram (x against t), one row per direction, GT left and tracker right, one colour
    per trajectory, ID switches marked with red crosses on the tracker panels. Written atomically as PNG."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_ref = _earliest_time(gt_docs, rec_docs)
    directions = [(1, "eastbound"), (-1, "westbound")]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9), sharex=True, squeeze=False)
    cmap = plt.get_cmap("tab20")
    for row, (direction, dname) in enumerate(directions):
        for col, (docs, label) in enumerate(((gt_docs, "GT"), (rec_docs, "tracker"))):
            ax = axes[row][col]
            k = 0
            for doc in docs:
                if doc.get("direction") != direction:
                    continue
                t = np.asarray(doc["timestamp"], dtype=float) - t_ref
                ax.plot(t, np.asarray(doc["x_position"], dtype=float), lw=0.8, color=cmap(k % 20))
                k += 1
            if col == 1:
                pts = [(t - t_ref, x) for t, x, d in switch_points if d == direction]
                if pts:
                    ts, xs = zip(*pts)
                    ax.scatter(ts, xs, marker="x", color="red", s=30, zorder=5, label=f"ID switch ({len(pts)})")
                    ax.legend(loc="upper right", fontsize=8)
            ax.set_title(f"{label}, {dname} ({k} trajectories)", fontsize=10)
            ax.set_ylabel("x (ft)")
            if row == 1:
                ax.set_xlabel("t - t0 (s)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


# Fields that only RAW fragment sets (tracker output before stitching) or REC files carry, never GT.
RAW_FIELDS = ("gt_ids", "local_fragment_id")
REC_FIELDS = ("fragment_ids",)


def _time_span(docs: Sequence[Mapping[str, Any]]) -> tuple[float, float] | None:
    """(earliest, latest) timestamp over the documents, or None when none has a timestamp."""
    lo, hi = math.inf, -math.inf
    for doc in docs:
        ts = doc.get("timestamp") if isinstance(doc, Mapping) else None
        if isinstance(ts, (list, tuple)) and ts:
            try:
                first, last = float(ts[0]), float(ts[-1])
            except (TypeError, ValueError):
                continue
            lo, hi = min(lo, first, last), max(hi, first, last)
    return (lo, hi) if lo <= hi else None


def check_inputs(gt_docs: Sequence[Mapping[str, Any]], rec_docs: Sequence[Mapping[str, Any]],
                 gt_name: str = "GT", rec_name: str = "REC") -> list[str]:
    """Refuse a GT/REC pair that cannot be scored meaningfully; return warnings for doubtful ones.

    Raises ValueError when the GT file holds RAW fragments (`gt_ids`, `local_fragment_id`) or REC
    trajectories (`fragment_ids`), or when GT and REC do not overlap in time at all (e.g. another
    scenario's file). Warns when REC covers less than 90% of GT's time span.
    """
    warnings = []
    for fields, what, hint in ((RAW_FIELDS, "RAW fragments", "the fragments pp-lite stitches"),
                               (REC_FIELDS, "REC trajectories", "a tracker output")):
        marked = sum(1 for d in gt_docs if isinstance(d, Mapping) and any(f in d for f in fields))
        if gt_docs and marked * 2 > len(gt_docs):
            found = sorted({f for d in gt_docs if isinstance(d, Mapping) for f in fields if f in d})
            raise ValueError(f"{gt_name} holds {what} ({marked} of {len(gt_docs)} documents have "
                             f"{', '.join(found)}), not ground truth: pass {hint} as --rec and GT_<scenario>.json "
                             f"as --gt")
    gt_span, rec_span = _time_span(gt_docs), _time_span(rec_docs)
    if gt_span is None or rec_span is None:
        return warnings
    overlap = min(gt_span[1], rec_span[1]) - max(gt_span[0], rec_span[0])
    if overlap < 0:
        raise ValueError(f"{gt_name} (t {gt_span[0]:.2f} to {gt_span[1]:.2f}) and {rec_name} "
                         f"(t {rec_span[0]:.2f} to {rec_span[1]:.2f}) do not overlap in time; are they from the "
                         f"same scenario?")
    gt_len = gt_span[1] - gt_span[0]
    if gt_len > 0 and overlap < 0.9 * gt_len:
        warnings.append(f"{rec_name} overlaps only {overlap:.1f} s of {gt_name}'s {gt_len:.1f} s; the rest of the GT "
                        f"counts as misses")
    return warnings


def _load(path: str) -> list:
    from training.io import load_fragments
    return load_fragments(path)


def _json_ready(result: Mapping[str, Any]) -> dict:
    out = {}
    for k, v in result.items():
        if k.startswith("_"):
            continue
        out[k] = None if isinstance(v, float) and math.isnan(v) else v
    return out


def _click_main():
    import click

    from runtime.version import __version__

    @click.command("evaluate", context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, "--version", message="%(prog)s, version %(version)s")
    @click.option("--gt", "gt_path", required=True, type=click.Path(dir_okay=False),
                  help="ground-truth trajectories (GT_{scenario}.json, I-24 schema)")
    @click.option("--rec", "rec_path", required=True, type=click.Path(dir_okay=False),
                  help="tracker output to score: a REC file from pp_lite, or a RAW file to score the fragments as-is")
    @click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
                  help="also write the metrics to this JSON file (atomically)")
    @click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
                  help="also draw a time-space diagram (GT beside tracker, ID switches marked) to this PNG")
    @click.option("--iou", "iou_threshold", type=click.FloatRange(0.0, 1.0, min_open=True), default=IOU_THRESHOLD,
                  show_default=True, help="footprint IoU at which a tracker box matches a GT box")
    @click.option("--engine", type=click.Choice(ENGINES), default="fast", show_default=True,
                  help="fast: array matching identical to motmetrics' events; motmetrics: its own accumulator (slow)")
    def evaluate(gt_path, rec_path, json_path, plot_path, iou_threshold, engine):
        """Score a tracker output against ground truth the I-24 way: 25 Hz frames, footprint IoU matching
        with py-motmetrics; prints MOTA, MOTP, IDF1, precision, recall, FP, FN, IDsw, Fgmt/GT, Sw/GT,
        trajectories per GT (and HOTA if TrackEval is installed)."""
        try:
            for p in (gt_path, rec_path):
                if not os.path.isfile(p):
                    raise click.ClickException(f"{p} not found")
            gt_docs = _load(gt_path)
            rec_docs = _load(rec_path)
            for warning in check_inputs(gt_docs, rec_docs, os.path.basename(gt_path), os.path.basename(rec_path)):
                click.echo(f"evaluate: warning: {warning}", err=True)
            click.echo(f"evaluate: {len(gt_docs)} GT trajectories, {len(rec_docs)} tracker trajectories", err=True)
            result = evaluate_tracking(gt_docs, rec_docs, iou_threshold=iou_threshold, engine=engine,
                                       return_details=plot_path is not None)
        except (ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(format_metrics(result, os.path.basename(rec_path)))
        click.echo(f"({result['evaluator']}; {result['frames']} frames in {result['seconds']:.2f} s)")
        if result["matches"] == 0 and result["gt_boxes"] and rec_docs:
            click.echo(f"evaluate: warning: no tracker box matched a GT box (IoU >= {iou_threshold:g}); are "
                       f"{os.path.basename(gt_path)} and {os.path.basename(rec_path)} from the same scenario?", err=True)
        if json_path:
            payload = dict(_json_ready(result), gt=os.path.abspath(gt_path), rec=os.path.abspath(rec_path))
            atomic_write_text(json_path, json.dumps(payload, indent=1))
            click.echo(f"wrote {json_path}", err=True)
        if plot_path:
            plot_time_space(gt_docs, rec_docs, result["_details"]["switch_points"], plot_path,
                            title=f"{os.path.basename(rec_path)} vs {os.path.basename(gt_path)}")
            click.echo(f"wrote {plot_path}", err=True)

    return evaluate


def main(argv: Sequence[str] | None = None):
    """Console entry point `evaluate` (click)."""
    return _click_main()(args=argv, prog_name="evaluate")


if __name__ == "__main__":
    main()
