"""Named distribution shifts of a simulated scenario: what a tracker version or another day can change.

Two kinds of shift:

* **document shifts** transform the RAW fragment documents of a nominal scenario instance and leave
  its GT untouched: `velocity` or `detection_confidence` absent, the confidence on another tracker
  version's scale, extra velocity or dimension noise, a constant position offset per camera node,
  long occlusions that split fragments in two;
* **simulator shifts** simulate the scenario with other traffic or tracker-error knobs: denser
  traffic, another preset's speed regime, an error model outside the ranges training draws from.

Every shift is deterministic given `(shift, preset, seed)` (its random numbers come from a generator
seeded by all three), returns new documents (the input is never mutated) and its output passes
`runtime.fragment.Fragment.from_document`.

    from training.shifts import SHIFT_NAMES, shifted_scenario
    gt_docs, raw_docs = shifted_scenario("velocity_absent", "ii", seed=201)
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from training import simulate as sim

__all__ = [
    "Shift",
    "SHIFTS",
    "SHIFT_NAMES",
    "DOCUMENT_SHIFTS",
    "SIMULATOR_SHIFTS",
    "available_shifts",
    "apply_shift",
    "shift_rng",
    "shifted_preset",
    "shifted_scenario",
    "CONFIDENCE_RESCALE",
    "CAMERA_OFFSET_FT",
    "OCCLUSION_S",
    "OCCLUSION_SHARE",
    "DEMAND_FACTOR",
    "SPEED_REGIME_SOURCE",
    "OUTSIDE_RANGE_FACTOR",
    "OUTSIDE_FIELDS",
    "outside_error_model",
]

# ---------------------------------------------------------------------------------------- constants
VELOCITY_NOISE_FACTOR = 3.0          # total velocity noise (bias and per-sample) = 3x the simulator's
DIMENSION_NOISE_FACTOR = 2.0         # total dimension noise = 2x the simulator's
CONFIDENCE_RESCALE = (0.3, 0.5)      # c -> 0.3 + 0.5 c: another tracker version's confidence scale
CAMERA_OFFSET_FT = (4.0, 2.0)        # per compute_node_id offsets drawn uniformly in +-4 ft (x), +-2 ft (y)
OCCLUSION_S = (4.0, 10.0)            # hole length (s), uniform
OCCLUSION_SHARE = 0.3                # share of the long-enough single-vehicle fragments that get a hole
OCCLUSION_MIN_PIECE_S = 1.0          # each side of a hole keeps at least this much track
DEMAND_FACTOR = 1.5                  # denser traffic: arrivals per lane x1.5
# Which preset's speed regime each preset takes in `speed_regime_swap`: free flow <-> stop-and-go,
# and the snow scenario's noise with free-flow speeds.
SPEED_REGIME_SOURCE = {"i": "iii", "ii": "i", "iii": "i"}
SPEED_REGIME_FIELDS = (
    "desired_speed", "desired_speed_bounds", "initial_speed_factor", "warmup",
    "idm_accel", "idm_decel", "idm_time_headway", "idm_min_gap",
    "wave_interval", "wave_origin", "wave_speed", "wave_hold", "wave_decel",
)
OUTSIDE_RANGE_FACTOR = 1.5           # error model: each noise parameter at 1.5x its range's upper end
# The parameters `error_model_outside` pushes past their training range: the noise sigmas and biases and
# the error rates (more is worse for all of them and 1.5x the upper end is still a valid model).
# Timescales, probabilities near 1 (hand-off failure), the camera layout and the confidence model keep
# the preset's values.
OUTSIDE_FIELDS = (
    "position_sigma", "position_bias", "dimension_bias", "dimension_sigma",
    "speed_sigma", "speed_bias", "speed_start_sigma",
    "dropout_rate", "frame_drop", "id_switch_attempt", "false_positives_per_minute",
)


@dataclass(frozen=True)
class Shift:
    """One named shift. `kind` is "documents" (transform RAW, GT untouched) or "simulator"."""

    name: str
    kind: str
    description: str


SHIFTS: dict[str, Shift] = {s.name: s for s in (
    Shift("nominal", "documents", "the held-out scenario as simulated"),
    Shift("velocity_absent", "documents", "no `velocity` field in any fragment"),
    Shift("velocity_noise_x3", "documents",
          "extra velocity noise (per-fragment bias and correlated per-sample) so the total is ~3x the simulator's"),
    Shift("confidence_absent", "documents", "no `detection_confidence` field in any fragment"),
    Shift("confidence_rescaled", "documents",
          f"detection_confidence c -> {CONFIDENCE_RESCALE[0]:g} + {CONFIDENCE_RESCALE[1]:g} c (another tracker's scale)"),
    Shift("dimension_noise_x2", "documents",
          "extra length/width/height noise (relative bias and per-sample) so the total is ~2x the simulator's"),
    Shift("camera_offsets", "documents",
          f"a constant x/y offset per compute_node_id, uniform in +-{CAMERA_OFFSET_FT[0]:g} / "
          f"+-{CAMERA_OFFSET_FT[1]:g} ft"),
    Shift("occlusions", "documents",
          f"{OCCLUSION_S[0]:g}-{OCCLUSION_S[1]:g} s holes cut into {OCCLUSION_SHARE:.0%} of the long single-vehicle "
          "fragments, each split into two fragments with their own _id and the same gt_ids"),
    Shift("denser_traffic", "simulator", f"arrival demand x{DEMAND_FACTOR:g}"),
    Shift("speed_regime_swap", "simulator",
          "another preset's speed regime (desired speeds, IDM, stop waves): i<-iii, ii<-i, iii<-i"),
    Shift("error_model_outside", "simulator",
          f"the tracker's noise and error-rate parameters each at {OUTSIDE_RANGE_FACTOR:g}x the upper end of its "
          "training range (ERROR_RANGES)"),
)}
SHIFT_NAMES = tuple(SHIFTS)
DOCUMENT_SHIFTS = tuple(n for n, s in SHIFTS.items() if s.kind == "documents")
SIMULATOR_SHIFTS = tuple(n for n, s in SHIFTS.items() if s.kind == "simulator")


def _check_shift(name: str) -> Shift:
    try:
        return SHIFTS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown shift {name!r}; choose one of {', '.join(SHIFT_NAMES)}") from None


def _check_preset(preset: str) -> None:
    if preset not in sim.PRESETS:
        raise ValueError(f"unknown scenario {preset!r}; choose one of {', '.join(sim.SCENARIO_NAMES)}")


def available_shifts() -> tuple[str, ...]:
    """The shifts this simulator supports (`error_model_outside` needs `training.simulate.ERROR_RANGES`)."""
    return tuple(n for n in SHIFT_NAMES if n != "error_model_outside" or _error_ranges() is not None)


def shift_rng(shift: str, preset: str, seed: int) -> np.random.Generator:
    """The generator of one (shift, preset, seed): stable across Python runs and independent per shift."""
    key = [int(seed), zlib.crc32(shift.encode()), zlib.crc32(preset.encode()), 0x5817]
    return np.random.default_rng(key)


# ---------------------------------------------------------------------------------------- documents
def _copy(doc: Mapping[str, Any]) -> dict:
    """A copy that shares nothing mutable with `doc` (lists and dicts one and two levels deep)."""
    out = {}
    for key, value in doc.items():
        if isinstance(value, list):
            value = [list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v for v in value]
            if key == "gt_ids":
                value = [[dict(x) if isinstance(x, dict) else x for x in inner] if isinstance(inner, list) else inner
                         for inner in value]
        elif isinstance(value, dict):
            value = dict(value)
        out[key] = value
    return out


def _round(a: np.ndarray, decimals: int) -> list:
    return np.round(np.asarray(a, dtype=np.float64), decimals).tolist()


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float, rho: float, timescale: float) -> np.ndarray:
    """Zero-mean noise with marginal sd `sigma` shaped like the simulator's per-sample tracker noise:
    white noise under a Gaussian kernel of sd `timescale` s, or AR(1) with coefficient `rho` when
    `timescale` is 0."""
    if n <= 0 or sigma <= 0:
        return np.zeros(max(n, 0))
    if timescale > 0:
        k = timescale / sim.DT
        half = max(1, int(math.ceil(3.0 * k)))
        kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / k) ** 2)
    else:
        half = 0
        taps = 1 if rho <= 0 else max(1, int(math.ceil(math.log(0.01) / math.log(rho))))
        kernel = rho ** np.arange(taps)
    kernel = kernel / math.sqrt(float(np.sum(kernel ** 2)))
    return sigma * np.convolve(rng.normal(size=n + kernel.size - 1), kernel, "valid")


def _noise_model(preset: str) -> dict[str, Any]:
    """The simulator's nominal tracker-noise parameters of `preset` that the noise shifts scale."""
    p = sim.PRESETS[preset]

    def get(name, default):
        value = getattr(p, name, None)
        return default if value is None else value

    timescale = float(get("noise_timescale", 0.0))
    return {
        "speed_sigma": float(get("speed_sigma", 3.0)),
        "speed_bias": float(get("speed_bias", 1.5)),
        "speed_timescale": float(get("speed_timescale", 0.0)) or timescale,
        "speed_start_sigma": float(get("speed_start_sigma", 0.0)),
        "speed_start_decay": float(get("speed_start_decay", 1.0)),
        "noise_correlation": float(get("noise_correlation", 0.7)),
        "noise_timescale": timescale,
        "dimension_sigma": tuple(float(v) for v in get("dimension_sigma", (0.8, 0.15, 0.3))),
        "dimension_bias": tuple(float(v) for v in get("dimension_bias", (0.06, 0.04, 0.08))),
    }


def _drop_field(field: str) -> Callable:
    def transform(docs, preset, rng):
        out = []
        for doc in docs:
            new = _copy(doc)
            new.pop(field, None)
            out.append(new)
        return out
    return transform


def _velocity_noise(docs, preset, rng):
    m = _noise_model(preset)
    extra = math.sqrt(VELOCITY_NOISE_FACTOR ** 2 - 1.0)   # independent noise adds in variance
    out = []
    for doc in docs:
        new = _copy(doc)
        v = doc.get("velocity")
        if isinstance(v, list) and v and len(v) == len(doc["timestamp"]):
            arr = np.asarray(v, dtype=np.float64)
            arr = arr + rng.normal(0.0, extra * m["speed_bias"]) \
                + _smooth_noise(rng, arr.size, extra * m["speed_sigma"], m["noise_correlation"], m["speed_timescale"])
            if m["speed_start_sigma"] > 0:   # the filter's start-up error, as the simulator models it
                elapsed = np.asarray(doc["timestamp"], dtype=np.float64) - float(doc["timestamp"][0])
                arr = arr + rng.normal(0.0, extra * m["speed_start_sigma"]) * np.exp(-elapsed / m["speed_start_decay"])
            new["velocity"] = _round(np.maximum(arr, 0.0), 3)
        out.append(new)
    return out


def _confidence_rescaled(docs, preset, rng):
    a, b = CONFIDENCE_RESCALE
    out = []
    for doc in docs:
        new = _copy(doc)
        c = doc.get("detection_confidence")
        if isinstance(c, list) and c:
            new["detection_confidence"] = _round(a + b * np.asarray(c, dtype=np.float64), 4)
        elif isinstance(c, (int, float)) and not isinstance(c, bool):
            new["detection_confidence"] = round(a + b * float(c), 4)
        out.append(new)
    return out


def _dimension_noise(docs, preset, rng):
    m = _noise_model(preset)
    extra = math.sqrt(DIMENSION_NOISE_FACTOR ** 2 - 1.0)
    out = []
    for doc in docs:
        new = _copy(doc)
        n = len(doc["timestamp"])
        for field, rel, sd in zip(("length", "width", "height"), m["dimension_bias"], m["dimension_sigma"]):
            value = doc.get(field)
            if value is None or isinstance(value, bool):
                continue
            scalar = isinstance(value, (int, float))
            arr = np.full(n, float(value)) if scalar else np.asarray(value, dtype=np.float64)
            noisy = arr * (1.0 + rng.normal(0.0, extra * rel)) \
                + _smooth_noise(rng, arr.size, extra * sd, m["noise_correlation"], m["noise_timescale"])
            noisy = np.maximum(noisy, 0.5 * arr)          # a box is never degenerate
            new[field] = round(float(np.mean(noisy)), 3) if scalar else _round(noisy, 3)
        out.append(new)
    return out


def _camera_offsets(docs, preset, rng):
    nodes = sorted({doc.get("compute_node_id", 1) for doc in docs}, key=lambda v: (str(type(v)), v))
    offsets = {node: (float(rng.uniform(-CAMERA_OFFSET_FT[0], CAMERA_OFFSET_FT[0])),
                      float(rng.uniform(-CAMERA_OFFSET_FT[1], CAMERA_OFFSET_FT[1]))) for node in nodes}
    out = []
    for doc in docs:
        new = _copy(doc)
        dx, dy = offsets[doc.get("compute_node_id", 1)]
        x = _round(np.asarray(doc["x_position"], dtype=np.float64) + dx, 3)
        new["x_position"] = x
        new["y_position"] = _round(np.asarray(doc["y_position"], dtype=np.float64) + dy, 3)
        new["starting_x"], new["ending_x"] = x[0], x[-1]
        out.append(new)
    return out


def _oid(*parts: Any) -> str:
    """A deterministic 24-hex ObjectId-like string."""
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:24]


def _id_string(doc: Mapping[str, Any]) -> str:
    value = doc.get("_id")
    if isinstance(value, Mapping):
        value = value.get("$oid")
    return str(value)


def _slice_doc(doc: Mapping[str, Any], keep: np.ndarray, new_id: str) -> dict:
    n = len(doc["timestamp"])
    new = _copy(doc)
    for key, value in doc.items():
        if isinstance(value, list) and len(value) == n and key != "gt_ids":
            new[key] = [v for v, k in zip(value, keep) if k]
    new["_id"] = {"$oid": new_id} if isinstance(doc.get("_id"), Mapping) else new_id
    t = new["timestamp"]
    new["first_timestamp"], new["last_timestamp"] = float(t[0]), float(t[-1])
    new["starting_x"], new["ending_x"] = new["x_position"][0], new["x_position"][-1]
    return new


def _occlusions(docs, preset, rng):
    out = []
    for doc in docs:
        t = np.asarray(doc["timestamp"], dtype=np.float64)
        hole = float(rng.uniform(*OCCLUSION_S))
        pick = rng.random() < OCCLUSION_SHARE
        start = float(rng.random())
        gt_ids = doc.get("gt_ids") or []
        eligible = (len(gt_ids) == 1 and t.size >= 2
                    and t[-1] - t[0] >= hole + 2 * OCCLUSION_MIN_PIECE_S)
        if not (pick and eligible):
            out.append(_copy(doc))
            continue
        lo = t[0] + OCCLUSION_MIN_PIECE_S
        hi = t[-1] - OCCLUSION_MIN_PIECE_S - hole
        h0 = lo + start * (hi - lo)
        before, after = t < h0, t > h0 + hole
        if before.sum() < 4 or after.sum() < 4:   # never at 25 Hz; guards odd sample rates
            out.append(_copy(doc))
            continue
        fid = _id_string(doc)
        out.append(_slice_doc(doc, before, _oid("occlusion", fid, 0)))
        out.append(_slice_doc(doc, after, _oid("occlusion", fid, 1)))
    out.sort(key=lambda d: (d["last_timestamp"], d["first_timestamp"], d["direction"], d["starting_x"]))
    return out


_TRANSFORMS: dict[str, Callable] = {
    "nominal": lambda docs, preset, rng: [_copy(d) for d in docs],
    "velocity_absent": _drop_field("velocity"),
    "velocity_noise_x3": _velocity_noise,
    "confidence_absent": _drop_field("detection_confidence"),
    "confidence_rescaled": _confidence_rescaled,
    "dimension_noise_x2": _dimension_noise,
    "camera_offsets": _camera_offsets,
    "occlusions": _occlusions,
}


def apply_shift(name: str, raw_docs: Sequence[Mapping[str, Any]], preset: str, seed: int) -> list[dict]:
    """Apply a document shift to RAW fragment documents of scenario `preset`, instance `seed`.

    Returns new documents (the input is not modified); the same (name, preset, seed, input) always
    gives the same output. Simulator shifts raise ValueError: use `shifted_scenario`.
    """
    shift = _check_shift(name)
    _check_preset(preset)
    if shift.kind != "documents":
        raise ValueError(f"shift {name!r} changes the simulation, not the documents; use shifted_scenario")
    return _TRANSFORMS[name](raw_docs, preset, shift_rng(name, preset, seed))


# ---------------------------------------------------------------------------------------- simulator
def _error_ranges() -> Mapping[str, Any] | None:
    ranges = getattr(sim, "ERROR_RANGES", None)
    return ranges if isinstance(ranges, Mapping) and ranges else None


def outside_error_model() -> dict[str, Any]:
    """The error model of `error_model_outside`: every noise and error-rate parameter of
    `training.simulate.ERROR_RANGES` (OUTSIDE_FIELDS) at OUTSIDE_RANGE_FACTOR x its range's upper end
    (per element for tuple fields); the other fields keep the preset's calibrated values.

    Returns field -> value, to pass as `simulate(..., error_model=...)`.
    """
    ranges = _error_ranges()
    if ranges is None:
        raise ValueError("shift 'error_model_outside' needs training.simulate.ERROR_RANGES, which this "
                         "simulator does not define")
    out: dict[str, Any] = {}
    for name in OUTSIDE_FIELDS:
        if name not in ranges:
            continue
        _, hi = ranges[name]
        out[name] = tuple(OUTSIDE_RANGE_FACTOR * float(v) for v in hi) if isinstance(hi, (tuple, list)) \
            else OUTSIDE_RANGE_FACTOR * float(hi)
    return out


def shifted_preset(name: str, preset: str) -> sim.ScenarioPreset:
    """The ScenarioPreset a simulator shift simulates (the preset itself for document shifts)."""
    _check_shift(name)
    _check_preset(preset)
    p = sim.PRESETS[preset]
    if name == "denser_traffic":
        return dataclasses.replace(p, demand_per_lane=p.demand_per_lane * DEMAND_FACTOR)
    if name == "speed_regime_swap":
        src = sim.PRESETS[SPEED_REGIME_SOURCE[preset]]
        return dataclasses.replace(p, **{f: getattr(src, f) for f in SPEED_REGIME_FIELDS if hasattr(p, f)})
    return p


def _simulate(p: sim.ScenarioPreset, seed: int, duration: float | None, error_model: Any = None):
    return sim.simulate(p, seed, duration, error_model=error_model)


def shifted_scenario(name: str, preset: str, seed: int, duration: float | None = None,
                     nominal: tuple[list[dict], list[dict]] | None = None) -> tuple[list[dict], list[dict]]:
    """GT and RAW documents of scenario `preset`, instance `seed`, under shift `name`.

    Parameters
    ----------
    name : one of SHIFT_NAMES.
    preset, seed, duration : as for `training.simulate.simulate`.
    nominal : the nominal `(gt_docs, raw_docs)` of (preset, seed, duration) when already simulated;
        document shifts transform its RAW (and return its GT as is) instead of simulating again.
    """
    shift = _check_shift(name)
    _check_preset(preset)
    if shift.kind == "documents":
        gt_docs, raw_docs = nominal if nominal is not None else _simulate(sim.PRESETS[preset], seed, duration)
        return gt_docs, apply_shift(name, raw_docs, preset, seed)
    if name == "error_model_outside":
        return _simulate(sim.PRESETS[preset], seed, duration, error_model=outside_error_model())
    return _simulate(shifted_preset(name, preset), seed, duration)
