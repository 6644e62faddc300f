"""Simulate the three I-24 MOTION benchmark scenarios as GT and RAW fragment sets in the I-24 schema.

Traffic is an IDM car-following model with lane changes on a 4 + 4 lane freeway segment
(x = -100 .. 2200 ft); a tracking-error model (camera hand-offs, blind zones, dropouts, noise,
identity switches, false positives) turns each GT trajectory into RAW tracker fragments, labelled
with the GT vehicles they cover. Everything is drawn from one seeded numpy Generator, so a
(preset, seed, duration) triple always yields byte-identical documents.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import click
import numpy as np

from runtime.files import atomic_write_text
from training.io import gt_id_of, save_fragments

__all__ = [
    "ScenarioPreset",
    "PRESETS",
    "SCENARIO_NAMES",
    "ERROR_MODEL_FIELDS",
    "ERROR_RANGES",
    "SIMULATOR_VERSION",
    "draw_error_model",
    "error_model_of",
    "resolve_preset",
    "simulate",
    "scenario_stats",
    "write_scenario",
    "main",
]

DT = 0.04                       # s, the GT frame interval (25 Hz)
X_MIN, X_MAX = -100.0, 2200.0   # ft, the instrumented corridor
SEGMENT_LENGTH = X_MAX - X_MIN
LANES_PER_DIRECTION = 4
LANE_WIDTH = 12.0               # ft
# y of the left edge of lane 0 per direction: EB lanes occupy 0..48 ft, WB 72..120 ft.
LANE_Y0 = {1: 0.0, -1: 72.0}
DIRECTIONS = (1, -1)            # +1 eastbound (x increasing), -1 westbound


@dataclass(frozen=True)
class VehicleClass:
    """Dimension distribution (ft) and driving-behaviour factors of one I-24 coarse vehicle class."""

    code: int                       # I-24 coarse_vehicle_class
    name: str
    length: tuple[float, float]     # ("normal": mean, sd) or ("uniform": lo, hi), see `uniform_length`
    width: tuple[float, float]      # mean, sd
    height: tuple[float, float]     # mean, sd
    uniform_length: bool = False
    speed_factor: float = 1.0       # desired speed relative to the preset's
    accel_factor: float = 1.0       # IDM maximum acceleration relative to the preset's
    headway_factor: float = 1.0     # IDM time headway relative to the preset's


# I-24 coarse classes: 0 sedan, 1 midsize (SUV), 2 van, 3 pickup, 4 semi, 5 truck.
# Dimensions are what the I-24 tracker reports (real RAW pairs, REFERENCE.md §1.6: heights cluster at
# 5.0-5.9 ft for cars and 10-13 ft for trucks; lengths 12.6-17.8 ft for most cars).
VEHICLE_CLASSES = (
    VehicleClass(0, "sedan", (14.6, 0.7), (6.0, 0.15), (5.08, 0.04)),
    VehicleClass(1, "midsize", (15.8, 0.8), (6.3, 0.2), (5.3, 0.12)),
    VehicleClass(2, "van", (17.0, 0.8), (6.5, 0.15), (5.8, 0.3)),
    VehicleClass(3, "pickup", (18.0, 0.8), (6.6, 0.2), (5.6, 0.2)),
    VehicleClass(4, "semi", (60.0, 75.0), (8.5, 0.05), (11.0, 0.5), uniform_length=True,
                 speed_factor=0.93, accel_factor=0.55, headway_factor=1.3),
    VehicleClass(5, "truck", (30.0, 45.0), (8.2, 0.2), (10.0, 0.6), uniform_length=True,
                 speed_factor=0.95, accel_factor=0.7, headway_factor=1.2),
)


@dataclass(frozen=True)
class ScenarioPreset:
    """Every knob of one benchmark condition: traffic, the camera system and the tracking errors.

    Units: ft, s, ft/s, ft/s^2. Rates are per second unless the name says otherwise.
    """

    name: str
    description: str
    duration: float                 # s of GT, from start_time
    start_time: float               # Unix epoch s of the first GT frame
    # --- traffic demand and initial state
    demand_per_lane: float          # mean arrivals per lane per s at the upstream boundary
    direction_demand: tuple[float, float]   # demand multiplier for (EB, WB)
    min_headway: float              # s, the shortest arrival headway
    initial_speed_factor: float     # vehicles present at the start drive at this share of their desired speed
    class_mix: tuple[float, ...]    # probability of each VEHICLE_CLASSES entry
    warmup: float                   # s simulated before the first GT frame
    upstream_buffer: float = 300.0  # ft simulated before the corridor, so entering traffic is settled
    # relative demand per lane, shoulder lane first and median (inner) lane last, in both directions
    lane_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    direction_speed: tuple[float, float] = (1.0, 1.0)   # desired-speed multiplier for (EB, WB)
    wave_directions: tuple[float, float] = (1.0, 1.0)   # 1 where stop-and-go waves run (EB, WB), 0 where not
    lateral_wander: float = 0.4     # ft, the largest amplitude of a driver's slow weave inside the lane
    downstream_buffer: float = 300.0
    # --- IDM car following
    desired_speed: tuple[float, float] = (104.0, 5.0)   # mean, sd of the desired speed
    desired_speed_bounds: tuple[float, float] = (92.0, 118.0)
    idm_accel: float = 3.3
    idm_decel: float = 4.9
    idm_time_headway: float = 1.3
    idm_min_gap: float = 6.5
    # --- lane changes
    lane_change_rate: float = 0.006         # discretionary changes per vehicle and s
    lane_change_incentive_rate: float = 0.15   # extra rate when the leader holds the vehicle back
    lane_change_duration: tuple[float, float] = (3.0, 5.0)
    # --- stop-and-go perturbations: a leader brakes hard and the wave travels upstream
    wave_interval: float = 0.0              # s between perturbations per direction; 0 = none
    wave_origin: tuple[float, float] = (0.0, 0.0)   # travel-distance range (ft) where waves start
    wave_speed: tuple[float, float] = (0.0, 6.0)    # speed the perturbed leaders brake to
    wave_hold: tuple[float, float] = (1.0, 3.0)     # s held at that speed
    wave_decel: float = 8.0
    # --- cameras
    camera_spacing: tuple[float, float] = (300.0, 400.0)
    cameras_per_node: int = 2
    blind_zone: tuple[float, float] = (3.0, 15.0)  # ft of no coverage at each camera boundary
    handoff_failure: float = 0.2            # probability that a track ends at a camera boundary
    reacquire_delay: tuple[float, float] = (0.15, 0.6)  # lognormal median (s) and sigma after a blind zone
    # --- random dropouts inside a field of view (occlusions, missed detections)
    dropout_rate: float = 0.03              # per s of tracking
    dropout_gap: tuple[float, float] = (0.7, 0.7)  # lognormal median (s) and sigma of the gap
    gap_bounds: tuple[float, float] = (0.1, 4.0)   # dropout gaps are clipped to this range
    # --- measurement noise
    position_sigma: tuple[float, float] = (1.3, 0.4)   # x, y per-sample sd (ft)
    position_bias: tuple[float, float] = (1.0, 0.3)    # x, y per-fragment bias sd (ft)
    noise_correlation: float = 0.7                     # AR(1) coefficient of per-sample noise at 25 Hz
    # s, sd of a Gaussian kernel that smooths the per-sample position and dimension noise (0 = none):
    # a tracker reports filtered states, so its errors are slow and its curvature small.
    noise_timescale: float = 0.0
    # lognormal sigma of a per-fragment factor on every per-sample noise sd: some tracks are much
    # noisier than others (the real pairs' position, size and curvature features are heavy-tailed)
    noise_fragment_spread: float = 0.0
    dimension_bias: tuple[float, float, float] = (0.06, 0.04, 0.08)   # relative per-fragment sd (l, w, h)
    dimension_sigma: tuple[float, float, float] = (0.8, 0.15, 0.3)    # per-sample sd (ft)
    speed_sigma: float = 3.0                # per-sample sd of the tracker speed
    speed_bias: float = 1.5                 # per-fragment sd of the tracker speed
    speed_timescale: float = 0.0            # s, Gaussian smoothing of the per-sample speed noise (0 = as position)
    speed_start_sigma: float = 0.0          # sd of the speed error when a track starts (filter initialisation)
    speed_start_decay: float = 0.5          # s, time constant over which that start error decays
    confidence_mean: float = 0.93
    confidence_concentration: float = 25.0  # Beta concentration of per-sample confidence
    confidence_fragment_sd: float = 0.03    # sd of a fragment's mean confidence around confidence_mean
    confidence_timescale: float = 0.0       # s, smoothing of per-sample confidence around the fragment mean
    confidence_floor: float = 0.0           # detections below this confidence are not reported (clipped up)
    # logit drop of the confidence at a fragment's first and last sample (a vehicle entering or leaving
    # view, half occluded), fading over confidence_edge_time s towards the inside
    confidence_edge_drop: tuple[float, float] = (0.0, 0.0)
    confidence_edge_time: float = 0.3
    low_confidence_share: float = 0.01      # samples of a half-occluded vehicle, confidence 0.05-0.4
    # --- tracker timing
    time_jitter: float = 0.002              # s sd of tracker sample times around a 25 Hz grid
    frame_drop: float = 0.01                # probability that a single frame is missing inside a fragment
    # --- identity errors and clutter
    id_switch_attempt: float = 0.06         # per fragment: chance that it tries to swap onto a neighbour
    id_switch_radius: tuple[float, float] = (20.0, 14.0)   # |dx|, |dy| (ft) that make vehicles confusable
    false_positives_per_minute: float = 8.0
    false_positive_duration: tuple[float, float] = (0.2, 2.0)

    def __post_init__(self):
        def positive(name):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 0):
                raise ValueError(f"preset {self.name!r}: {name} must be > 0, got {getattr(self, name)!r}")

        def probability(name):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"preset {self.name!r}: {name} must be in [0, 1], got {v!r}")

        def interval(name, lo_min=0.0):
            lo, hi = getattr(self, name)
            if not (lo_min <= lo <= hi):
                raise ValueError(f"preset {self.name!r}: {name} must be an interval (lo <= hi, lo >= {lo_min}),"
                                 f" got {(lo, hi)!r}")

        for name in ("duration", "start_time", "demand_per_lane", "min_headway", "initial_speed_factor",
                     "idm_accel", "idm_decel", "idm_time_headway", "idm_min_gap", "wave_decel",
                     "confidence_concentration", "cameras_per_node", "speed_start_decay",
                     "confidence_edge_time"):
            positive(name)
        for name in ("handoff_failure", "frame_drop", "id_switch_attempt", "noise_correlation",
                     "low_confidence_share", "confidence_floor"):
            probability(name)
        for name in ("desired_speed_bounds", "lane_change_duration", "wave_speed", "wave_hold",
                     "camera_spacing", "blind_zone", "gap_bounds", "false_positive_duration", "wave_origin"):
            interval(name)
        if len(self.lane_weights) != LANES_PER_DIRECTION or min(self.lane_weights) < 0 or sum(self.lane_weights) <= 0:
            raise ValueError(f"preset {self.name!r}: lane_weights must be {LANES_PER_DIRECTION} non-negative weights")
        if len(self.direction_speed) != 2 or min(self.direction_speed) <= 0:
            raise ValueError(f"preset {self.name!r}: direction_speed must be two positive multipliers")
        if len(self.class_mix) != len(VEHICLE_CLASSES) or min(self.class_mix) < 0 \
                or not math.isclose(sum(self.class_mix), 1.0, abs_tol=1e-6):
            raise ValueError(f"preset {self.name!r}: class_mix must be {len(VEHICLE_CLASSES)} probabilities summing to 1")
        if not 0.0 < self.confidence_mean < 1.0:
            raise ValueError(f"preset {self.name!r}: confidence_mean must be in (0, 1)")
        if self.camera_spacing[0] < 50.0:
            raise ValueError(f"preset {self.name!r}: camera_spacing must be at least 50 ft")
        if 3.0 * self.time_jitter >= DT / 2:
            raise ValueError(f"preset {self.name!r}: time_jitter {self.time_jitter} s would reorder samples")
        if any(v < 0 for v in (self.warmup, self.lane_change_rate, self.lane_change_incentive_rate,
                                self.wave_interval, self.dropout_rate, self.false_positives_per_minute,
                                self.speed_sigma, self.speed_bias, self.time_jitter, self.noise_timescale,
                                self.noise_fragment_spread,
                                self.speed_timescale, self.speed_start_sigma, self.confidence_fragment_sd,
                                self.confidence_timescale, self.lateral_wander, *self.confidence_edge_drop)):
            raise ValueError(f"preset {self.name!r}: rates, sigmas and durations must be non-negative")


# Class mixes: sedan, midsize, van, pickup, semi, truck.
_MIX_FREEWAY = (0.42, 0.28, 0.05, 0.12, 0.09, 0.04)

# Calibrated against the real I-24 pairs (training_dataset_advanced.npz) with benchmarks/realism.py:
# traffic and tracker-error constants fitted per scenario (coordinate search on the KS distances of
# the i24-47-v1 features of positive pairs); docs/realism.md has the before/after tables. The tracker
# output is smooth (Gaussian-smoothed noise, noise_timescale), confidences are >= 0.3 and dip where a
# track is lost, the velocity field is much noisier than the positions.
_SMOOTH_TRACKER = dict(confidence_timescale=0.5, confidence_floor=0.3, low_confidence_share=0.0)

PRESETS: dict[str, ScenarioPreset] = {
    "i": ScenarioPreset(
        name="i", description="free flow, 60 s", duration=60.0, start_time=1623877175.0,
        demand_per_lane=0.52, direction_demand=(1.0, 0.9), min_headway=0.9, initial_speed_factor=0.97,
        class_mix=_MIX_FREEWAY, warmup=12.0, lane_weights=(0.6, 0.8, 1.0, 1.6), lateral_wander=1.6,
        desired_speed=(128.0, 5.4), desired_speed_bounds=(100.0, 150.0),
        idm_accel=3.3, idm_decel=4.9, idm_time_headway=1.0, idm_min_gap=6.5,
        blind_zone=(1.8, 24.0), handoff_failure=0.22, reacquire_delay=(0.7, 0.4),
        dropout_rate=0.03, dropout_gap=(0.8, 0.5),
        position_sigma=(1.5, 0.2), position_bias=(1.28, 0.096), noise_timescale=0.15, noise_fragment_spread=0.24,
        dimension_bias=(0.03, 0.032, 0.021), dimension_sigma=(0.48, 0.064, 0.05),
        speed_sigma=8.0, speed_bias=8.0, speed_timescale=0.48, speed_start_sigma=2.0,
        confidence_mean=0.972, confidence_concentration=38.4, confidence_fragment_sd=0.0375,
        confidence_edge_drop=(0.2, 2.5), confidence_edge_time=0.24, **_SMOOTH_TRACKER,
        id_switch_attempt=0.07, false_positives_per_minute=10.0,
    ),
    "ii": ScenarioPreset(
        name="ii", description="slow traffic in snow, 51 s", duration=51.0, start_time=1641481246.0,
        demand_per_lane=0.125, direction_demand=(1.0, 0.6), min_headway=1.5, initial_speed_factor=0.95,
        class_mix=(0.38, 0.32, 0.05, 0.15, 0.07, 0.03), warmup=15.0,
        lane_weights=(1.6, 1.0, 1.0, 1.2), lateral_wander=1.5,
        desired_speed=(38.0, 5.6), desired_speed_bounds=(20.0, 60.0),
        idm_accel=2.3, idm_decel=3.5, idm_time_headway=2.0, idm_min_gap=10.0,
        lane_change_rate=0.003, lane_change_incentive_rate=0.05,
        blind_zone=(3.0, 9.0), handoff_failure=0.96, reacquire_delay=(0.8, 0.6),
        dropout_rate=0.12, dropout_gap=(1.12, 0.48), gap_bounds=(0.1, 12.0),
        position_sigma=(1.2, 0.32), position_bias=(0.36, 0.4), noise_timescale=0.15, noise_fragment_spread=0.64,
        dimension_bias=(0.064, 0.048, 0.015), dimension_sigma=(0.4, 0.16, 0.16),
        speed_sigma=3.0, speed_bias=3.0, speed_timescale=0.144, speed_start_sigma=3.2,
        confidence_mean=0.958, confidence_concentration=12.0, confidence_fragment_sd=0.05,
        confidence_edge_drop=(1.6, 0.36), confidence_edge_time=0.24, **_SMOOTH_TRACKER,
        time_jitter=0.003, frame_drop=0.03,
        id_switch_attempt=0.08, false_positives_per_minute=14.0,
    ),
    "iii": ScenarioPreset(
        name="iii", description="congested stop-and-go westbound, free flow eastbound, 50 s",
        duration=50.0, start_time=1624016585.0,
        demand_per_lane=0.3, direction_demand=(1.0, 0.95), min_headway=1.4, initial_speed_factor=0.8,
        class_mix=(0.45, 0.32, 0.06, 0.12, 0.03, 0.02), warmup=60.0,
        lane_weights=(0.6, 0.8, 1.0, 1.6), lateral_wander=0.6,
        # In the real pairs eastbound flows at ~110 ft/s while westbound stops and goes (~20 ft/s).
        desired_speed=(52.0, 1.8), desired_speed_bounds=(45.0, 58.0), direction_speed=(2.2, 1.0),
        idm_accel=2.6, idm_decel=4.0, idm_time_headway=1.2, idm_min_gap=7.0,
        lane_change_rate=0.004, lane_change_incentive_rate=0.06,
        # Braking leaders anywhere in (and just past) the corridor; IDM at this density is string
        # unstable, so each perturbation grows into a stop wave that travels upstream (westbound only).
        wave_interval=18.0, wave_origin=(300.0, 2500.0), wave_speed=(0.0, 4.0), wave_hold=(1.0, 3.0),
        wave_decel=7.0, wave_directions=(0.0, 1.0),
        blind_zone=(4.8, 15.0), handoff_failure=0.18, reacquire_delay=(1.28, 0.22),
        dropout_rate=0.25, dropout_gap=(1.2, 0.9), gap_bounds=(0.1, 15.0),
        position_sigma=(0.72, 0.15), position_bias=(1.28, 0.19), noise_timescale=0.072, noise_fragment_spread=0.64,
        dimension_bias=(0.029, 0.032, 0.021), dimension_sigma=(0.6, 0.08, 0.05),
        speed_sigma=7.68, speed_bias=1.8, speed_timescale=0.48, speed_start_sigma=2.0,
        confidence_mean=0.98, confidence_concentration=48.0, confidence_fragment_sd=0.016,
        confidence_edge_drop=(0.8, 0.5), confidence_edge_time=0.4, **_SMOOTH_TRACKER,
        id_switch_attempt=0.035, false_positives_per_minute=16.0,
    ),
}
SCENARIO_NAMES = tuple(PRESETS)

# Bump when a change to the simulator alters what a (preset, seed, duration) produces, so caches keyed
# on those (e.g. mined pairs) can tell stale entries apart.
SIMULATOR_VERSION = "sim-2"  # sim-2: recalibrated against the real pairs (docs/realism.md)

# ----------------------------------------------------------------------------------------------
# Tracker-error model ranges: the domain that `draw_error_model` randomises training scenarios over
# ----------------------------------------------------------------------------------------------
# Keyed by ScenarioPreset field. Scalar fields: (lo, hi). Tuple fields: (lo_tuple, hi_tuple), one
# range per element, drawn independently (interval fields such as blind_zone are sorted after the
# draw). Every range covers the three calibrated presets' values (docs/realism.md lists them with
# the real-data figures they were fitted to) and reaches beyond them on both sides, so a model
# trained on draws sees trackers better and worse than the calibrated one.
ERROR_RANGES: dict[str, tuple[Any, Any]] = {
    # camera hand-offs (calibrated: blind zones 1.8-24 ft, 18-96 % of hand-offs lose the track,
    # re-acquired after a lognormal delay of median 0.7-1.3 s)
    "camera_spacing": ((200.0, 300.0), (350.0, 500.0)),
    "blind_zone": ((0.0, 8.0), (6.0, 36.0)),
    "handoff_failure": (0.1, 1.0),
    "reacquire_delay": ((0.2, 0.1), (2.0, 1.0)),
    # dropouts (occlusions) and their gap lengths (calibrated: 0.03-0.25 per s, median 0.8-1.2 s)
    "dropout_rate": (0.01, 0.4),
    "dropout_gap": ((0.4, 0.3), (2.5, 1.2)),
    "gap_bounds": ((0.05, 4.0), (0.3, 20.0)),
    # position and dimension noise, and how smooth the tracker's output is (calibrated: 0.07-0.15 s)
    "position_sigma": ((0.3, 0.05), (2.5, 0.6)),
    "position_bias": ((0.2, 0.03), (2.5, 0.8)),
    "noise_timescale": (0.03, 0.5),
    "noise_fragment_spread": (0.0, 1.0),
    "dimension_bias": ((0.005, 0.005, 0.003), (0.12, 0.10, 0.08)),
    "dimension_sigma": ((0.05, 0.02, 0.01), (1.2, 0.3, 0.3)),
    # the velocity field (calibrated: per-sample sd 3-8 ft/s, per-fragment 1.8-8 ft/s)
    "speed_sigma": (1.0, 12.0),
    "speed_bias": (0.5, 12.0),
    "speed_timescale": (0.05, 1.0),
    "speed_start_sigma": (0.0, 8.0),
    "speed_start_decay": (0.1, 2.0),
    # detection confidence (calibrated: mean 0.96-0.98, floor 0.3, dips where a track is lost)
    "confidence_mean": (0.85, 0.99),
    "confidence_concentration": (5.0, 80.0),
    "confidence_fragment_sd": (0.0, 0.1),
    "confidence_timescale": (0.1, 1.5),
    "confidence_floor": (0.0, 0.4),
    "confidence_edge_drop": ((0.0, 0.0), (3.0, 3.0)),
    "confidence_edge_time": (0.1, 1.0),
    "low_confidence_share": (0.0, 0.03),
    # timing, identity errors and clutter
    "time_jitter": (0.0, 0.006),
    "frame_drop": (0.0, 0.05),
    "id_switch_attempt": (0.0, 0.12),
    "false_positives_per_minute": (0.0, 25.0),
}
ERROR_MODEL_FIELDS = tuple(ERROR_RANGES)
_INTERVAL_FIELDS = ("camera_spacing", "blind_zone", "gap_bounds")
_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(ScenarioPreset))


def draw_error_model(rng: np.random.Generator) -> dict[str, Any]:
    """One tracker-error model drawn uniformly from `ERROR_RANGES` (each scalar or tuple element alone).

    Returns field -> value (floats, or tuples of floats for tuple fields); interval fields are sorted.
    Pass it as `simulate(..., error_model=...)`, or use `simulate(..., randomize=True)`.
    """
    out: dict[str, Any] = {}
    for name, (lo, hi) in ERROR_RANGES.items():
        if isinstance(lo, tuple):
            value = tuple(float(rng.uniform(a, b)) for a, b in zip(lo, hi))
            if name in _INTERVAL_FIELDS:
                value = tuple(sorted(value))
            out[name] = value
        else:
            out[name] = float(rng.uniform(lo, hi))
    return out


def error_model_of(preset: "ScenarioPreset") -> dict[str, Any]:
    """The error-model fields (`ERROR_MODEL_FIELDS`) of a preset, as plain JSON-able values."""
    return {name: (list(v) if isinstance(v := getattr(preset, name), tuple) else v) for name in ERROR_MODEL_FIELDS}


def _preset_index(p: "ScenarioPreset") -> int:
    """A stable per-preset number mixed into the seed: the position in PRESETS, else a name hash."""
    if p.name in PRESETS:
        return SCENARIO_NAMES.index(p.name)
    return 1000 + zlib.crc32(p.name.encode("utf-8")) % 1_000_000


def resolve_preset(preset: "str | ScenarioPreset", seed: int = 0, *, error_model: Mapping[str, Any] | None = None,
                   randomize: bool = False) -> "ScenarioPreset":
    """The preset a `simulate` call runs: the named (or given) preset, with an error model drawn from
    `ERROR_RANGES` when `randomize` (a generator seeded from `seed` and the preset), then `error_model`
    overrides on top (any ScenarioPreset field but name; unknown keys raise ValueError)."""
    p = preset if isinstance(preset, ScenarioPreset) else _preset(preset)
    overrides: dict[str, Any] = {}
    if randomize:
        overrides.update(draw_error_model(np.random.default_rng([int(seed), _preset_index(p), 0x5EED])))
    if error_model is not None:
        if not isinstance(error_model, Mapping):
            raise ValueError(f"error_model must be a mapping of ScenarioPreset fields, got {type(error_model).__name__}")
        unknown = sorted(k for k in error_model if k not in _FIELD_NAMES or k == "name")
        if unknown:
            raise ValueError(f"error_model: unknown ScenarioPreset field(s) {', '.join(map(repr, unknown))}; "
                             f"error-model fields are {', '.join(ERROR_MODEL_FIELDS)}")
        overrides.update(error_model)
    if not overrides:
        return p
    clean = {}
    for key, value in overrides.items():
        current = getattr(p, key)
        if isinstance(current, tuple):
            if not isinstance(value, (list, tuple)) or len(value) != len(current):
                raise ValueError(f"error_model: {key} needs {len(current)} numbers, got {value!r}")
            value = tuple(float(v) for v in value)
        elif isinstance(current, bool) or not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"error_model: {key} must be a number, got {value!r}")
        elif isinstance(current, int) and not isinstance(current, bool):
            if int(value) != value:
                raise ValueError(f"error_model: {key} must be an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value) or \
                isinstance(value, tuple) and not all(math.isfinite(v) for v in value):
            raise ValueError(f"error_model: {key} must be finite, got {value!r}")
        clean[key] = value
    return dataclasses.replace(p, **clean)


def _preset(name: str) -> ScenarioPreset:
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIO_NAMES)}") from None


# ----------------------------------------------------------------------------------------------
# Traffic: IDM car following with lane changes, in travel coordinates
# ----------------------------------------------------------------------------------------------
# Each vehicle moves along its direction of travel: `s` is the distance of its back bumper from
# the corridor's upstream end, so x = X_MIN + s eastbound and x = X_MAX - s westbound (x is the
# back-centre position, as in I-24).


@dataclass
class _Vehicles:
    """Static attributes of every vehicle the traffic simulation may contain."""

    direction: np.ndarray       # +1 / -1
    lane: np.ndarray            # initial lane 0..3
    cls: np.ndarray             # index into VEHICLE_CLASSES
    length: np.ndarray
    width: np.ndarray
    height: np.ndarray
    v0: np.ndarray              # IDM desired speed
    accel: np.ndarray
    decel: np.ndarray
    headway: np.ndarray
    min_gap: np.ndarray
    lateral_offset: np.ndarray  # ft from the lane centre, per driver
    wander_amp: np.ndarray      # ft, slow lateral oscillation inside the lane
    wander_freq: np.ndarray     # rad/s
    wander_phase: np.ndarray


@dataclass
class _Traffic:
    """The simulated traffic, recorded at every GT frame (step-major rows)."""

    vehicles: _Vehicles
    n_steps: int                # GT frames 0 .. n_steps-1, frame k at k * DT s after start_time
    step_offsets: np.ndarray    # rows of frame k are step_offsets[k] : step_offsets[k+1]
    vid: np.ndarray
    s: np.ndarray
    y: np.ndarray
    v: np.ndarray


def _draw_vehicles(p: ScenarioPreset, n: int, rng: np.random.Generator) -> _Vehicles:
    cls = rng.choice(len(VEHICLE_CLASSES), size=n, p=np.asarray(p.class_mix))
    length = np.empty(n)
    width = np.empty(n)
    height = np.empty(n)
    speed_factor = np.empty(n)
    accel_factor = np.empty(n)
    headway_factor = np.empty(n)
    for c, vc in enumerate(VEHICLE_CLASSES):
        m = cls == c
        k = int(m.sum())
        if vc.uniform_length:
            length[m] = rng.uniform(vc.length[0], vc.length[1], k)
        else:
            length[m] = np.clip(rng.normal(vc.length[0], vc.length[1], k), vc.length[0] - 3 * vc.length[1],
                                vc.length[0] + 3 * vc.length[1])
        width[m] = np.clip(rng.normal(vc.width[0], vc.width[1], k), vc.width[0] - 0.5, vc.width[0] + 0.5)
        height[m] = np.clip(rng.normal(vc.height[0], vc.height[1], k), vc.height[0] - 1.0, vc.height[0] + 1.0)
        speed_factor[m] = vc.speed_factor
        accel_factor[m] = vc.accel_factor
        headway_factor[m] = vc.headway_factor
    lo, hi = p.desired_speed_bounds
    v0 = np.clip(rng.normal(p.desired_speed[0], p.desired_speed[1], n), lo, hi) * speed_factor
    return _Vehicles(
        direction=np.ones(n, dtype=np.int64), lane=np.zeros(n, dtype=np.int64), cls=cls,
        length=length, width=width, height=height, v0=v0,
        accel=p.idm_accel * accel_factor * rng.uniform(0.85, 1.15, n),
        decel=np.full(n, p.idm_decel),
        headway=p.idm_time_headway * headway_factor * rng.uniform(0.8, 1.2, n),
        min_gap=p.idm_min_gap * rng.uniform(0.8, 1.2, n),
        lateral_offset=np.clip(rng.normal(0.0, 0.6, n), -1.5, 1.5),
        wander_amp=rng.uniform(0.0, p.lateral_wander, n),
        wander_freq=2 * np.pi / rng.uniform(8.0, 20.0, n),
        wander_phase=rng.uniform(0, 2 * np.pi, n),
    )


def _lane_centre(direction: np.ndarray, lane: np.ndarray) -> np.ndarray:
    y0 = np.where(direction > 0, LANE_Y0[1], LANE_Y0[-1])
    return y0 + (lane + 0.5) * LANE_WIDTH


def _simulate_traffic(p: ScenarioPreset, duration: float, rng: np.random.Generator) -> _Traffic:
    """Run IDM traffic from `-warmup` to `duration` seconds and record every GT frame."""
    n_steps = int(round(duration / DT)) + 1
    warm_steps = int(round(p.warmup / DT))
    s_entry = -p.upstream_buffer
    s_exit = SEGMENT_LENGTH + p.downstream_buffer
    n_lanes = 2 * LANES_PER_DIRECTION
    t_first = -warm_steps * DT
    t_last = (n_steps - 1) * DT

    # Who exists: vehicles already on the road at the start of the warm-up, then Poisson-like
    # arrivals per lane (shifted exponential headways, so no two arrive closer than min_headway).
    lane_dir, lane_idx, lane_rate = [], [], []
    weights = np.asarray(p.lane_weights, dtype=np.float64)
    weights = weights * LANES_PER_DIRECTION / weights.sum()
    for d_i, d in enumerate(DIRECTIONS):
        for lane in range(LANES_PER_DIRECTION):
            lane_dir.append(d)
            lane_idx.append(lane)
            # lane_weights run shoulder -> median: EB lane 0 (y 0-12) and WB lane 3 (y 108-120) are shoulders.
            w = weights[lane] if d > 0 else weights[LANES_PER_DIRECTION - 1 - lane]
            lane_rate.append(max(p.demand_per_lane * p.direction_demand[d_i] * w, 1e-6))
    init_lane, init_pos, arr_lane, arr_time = [], [], [], []
    for key in range(n_lanes):
        mean_speed = p.desired_speed[0] * p.initial_speed_factor * p.direction_speed[0 if lane_dir[key] > 0 else 1]
        mean_headway = 1.0 / lane_rate[key]
        extra = max(mean_headway - p.min_headway, 1e-3)
        pos = s_exit - rng.uniform(0, mean_speed * mean_headway)
        while pos > s_entry:
            init_lane.append(key)
            init_pos.append(pos)
            pos -= mean_speed * (p.min_headway + rng.exponential(extra)) + 15.0    # + a car length
        t = t_first + rng.exponential(mean_headway)
        while t <= t_last:
            arr_lane.append(key)
            arr_time.append(t)
            t += p.min_headway + rng.exponential(extra)
    n_init = len(init_lane)
    n = n_init + len(arr_lane)
    veh = _draw_vehicles(p, n, rng)
    lane_key = np.asarray(init_lane + arr_lane, dtype=np.int64)
    veh.direction = np.asarray(lane_dir, dtype=np.int64)[lane_key]
    veh.lane = np.asarray(lane_idx, dtype=np.int64)[lane_key]
    if p.direction_speed != (1.0, 1.0):
        veh.v0 = veh.v0 * np.where(veh.direction > 0, p.direction_speed[0], p.direction_speed[1])
    arrival = np.concatenate([np.full(n_init, -np.inf), np.asarray(arr_time)])

    # State. `key` = direction block * 4 + lane, so one sort orders every lane of both directions.
    s = np.full(n, np.nan)
    v = np.zeros(n)
    key = lane_key.copy()
    y_from = _lane_centre(veh.direction, veh.lane)
    y_to = y_from.copy()
    lc_start = np.full(n, -1e9)
    lc_dur = np.ones(n)
    pert_until = np.full(n, -1e9)
    pert_speed = np.zeros(n)
    active = np.zeros(n, dtype=bool)
    s[:n_init] = np.asarray(init_pos)
    v[:n_init] = veh.v0[:n_init] * p.initial_speed_factor * rng.uniform(0.95, 1.05, n_init)
    active[:n_init] = True
    # Followers must not start inside their leader: push initial positions apart where needed.
    for k in range(n_lanes):
        idx = np.flatnonzero(key[:n_init] == k)
        idx = idx[np.argsort(-s[idx])]
        for a, b in zip(idx[:-1], idx[1:]):
            s[b] = min(s[b], s[a] - veh.length[b] - veh.min_gap[b])
    active &= ~(s < s_entry)
    pending = [list(np.flatnonzero((lane_key == k) & (np.arange(n) >= n_init))) for k in range(n_lanes)]
    pending_ptr = [0] * n_lanes

    wave_times: list[tuple[float, int]] = []
    if p.wave_interval > 0:
        for d_i in range(2):
            if p.wave_directions[d_i] <= 0:
                continue
            t = t_first + rng.uniform(0, p.wave_interval)
            while t <= t_last:
                wave_times.append((t, d_i))
                t += p.wave_interval * rng.uniform(0.7, 1.3)
        wave_times.sort()
    wave_ptr = 0

    rec_vid, rec_s, rec_y, rec_v = [], [], [], []
    offsets = np.zeros(n_steps + 1, dtype=np.int64)
    sqrt_ab = np.sqrt(veh.accel * veh.decel)
    lc_every = 5    # lane-change decisions every 0.2 s are frequent enough and cheaper
    act = np.flatnonzero(active)
    for step in range(-warm_steps, n_steps):
        t = step * DT
        # Leaders: sort active vehicles by (lane key, s); the next one in the same lane leads.
        ka = key[act]
        order = np.lexsort((s[act], ka))
        ia = act[order]
        ka = ka[order]
        sa = s[ia]
        va = v[ia]
        has_lead = np.zeros(ia.size, dtype=bool)
        has_lead[:-1] = ka[1:] == ka[:-1]
        lead = np.where(has_lead, np.concatenate((ia[1:], ia[-1:])), ia)
        gap = np.where(has_lead, s[lead] - sa - veh.length[ia], np.inf)
        gap = np.maximum(gap, 0.1)
        dv = va - v[lead]
        s_star = veh.min_gap[ia] + np.maximum(0.0, va * veh.headway[ia] + va * dv / (2 * sqrt_ab[ia]))
        acc = veh.accel[ia] * (1.0 - (va / veh.v0[ia]) ** 4 - (s_star / gap) ** 2)
        perturbed = pert_until[ia] > t
        if perturbed.any():
            target = (pert_speed[ia] - va) / 0.5
            acc = np.where(perturbed, np.minimum(acc, np.maximum(target, -p.wave_decel)), acc)
        acc = np.clip(acc, -30.0, veh.accel[ia])
        v_new = np.maximum(va + acc * DT, 0.0)
        ds = np.where(v_new > 0, va * DT + 0.5 * acc * DT * DT, va * va / np.maximum(-2 * acc, 1e-9))
        s_new = sa + np.maximum(ds, 0.0)
        # No overlaps even under emergency braking: never past the leader's new back bumper.
        lead_pos = np.flatnonzero(has_lead)
        limit = s_new[lead_pos + 1] - veh.length[ia[lead_pos]] - 0.5
        over = s_new[lead_pos] > limit
        if over.any():
            j = lead_pos[over]
            s_new[j] = np.maximum(sa[j], limit[over])
            v_new[j] = np.minimum(v_new[j], v_new[j + 1])
        s[ia] = s_new
        v[ia] = v_new

        # Stop-and-go: the vehicles just upstream of the wave origin brake hard in every lane.
        while wave_ptr < len(wave_times) and wave_times[wave_ptr][0] <= t:
            _, d_i = wave_times[wave_ptr]
            wave_ptr += 1
            origin = rng.uniform(*p.wave_origin)
            for lane in range(LANES_PER_DIRECTION):
                k = d_i * LANES_PER_DIRECTION + lane
                in_lane = ia[(ka == k) & (s[ia] <= origin + rng.uniform(-60, 60))]
                if in_lane.size:
                    i = in_lane[-1]
                    pert_speed[i] = rng.uniform(*p.wave_speed)
                    pert_until[i] = t + max(v[i] - pert_speed[i], 0.0) / p.wave_decel + rng.uniform(*p.wave_hold)

        if (step % lc_every) == 0:
            _lane_changes(p, veh, ia, ka, s, v, key, y_from, y_to, lc_start, lc_dur, t, lc_every * DT, rng)

        # Vehicles beyond the downstream buffer leave; queued arrivals enter where there is room.
        changed = False
        gone = ia[s[ia] > s_exit]
        if gone.size:
            active[gone] = False
            changed = True
        for k in range(n_lanes):
            queue = pending[k]
            ptr = pending_ptr[k]
            if ptr >= len(queue) or arrival[queue[ptr]] > t:
                continue
            i = queue[ptr]
            in_lane = ia[(ka == k) & active[ia]]
            if in_lane.size:
                last = in_lane[0]
                room = s[last] - veh.length[i] - s_entry
                v_ins = min(veh.v0[i], v[last] + 2.0)
                if room < veh.min_gap[i] + 0.6 * v_ins * veh.headway[i]:
                    continue    # the entry is blocked: the arrival queues upstream
            else:
                v_ins = veh.v0[i]
            s[i] = s_entry
            v[i] = v_ins
            active[i] = True
            pending_ptr[k] = ptr + 1
            changed = True
        if changed:
            act = np.flatnonzero(active)
        else:
            act = ia

        if step >= 0:
            rec_vid.append(act.copy())
            rec_s.append(s[act])
            rec_v.append(v[act])
            rec_y.append(_lateral(veh, act, y_from, y_to, lc_start, lc_dur, t))
            offsets[step + 1] = offsets[step] + act.size

    return _Traffic(veh, n_steps, offsets, np.concatenate(rec_vid), np.concatenate(rec_s),
                    np.concatenate(rec_y), np.concatenate(rec_v))


def _lateral(veh: _Vehicles, idx: np.ndarray, y_from, y_to, lc_start, lc_dur, t: float) -> np.ndarray:
    """Back-centre y: lane centre, a cosine lane-change profile, a driver offset and slow wander."""
    u = np.clip((t - lc_start[idx]) / lc_dur[idx], 0.0, 1.0)
    blend = 0.5 - 0.5 * np.cos(np.pi * u)
    return (y_from[idx] + (y_to[idx] - y_from[idx]) * blend + veh.lateral_offset[idx]
            + veh.wander_amp[idx] * np.sin(veh.wander_freq[idx] * t + veh.wander_phase[idx]))


def _lane_changes(p, veh, ia, ka, s, v, key, y_from, y_to, lc_start, lc_dur, t, interval, rng) -> None:
    """Start lane changes: discretionary ones at a low rate, more when the leader holds a driver back.

    A change needs a safe gap ahead and behind in the target lane (a simplified MOBIL safety test);
    the vehicle follows its new leader at once while y moves over 3-5 s.
    """
    n = ia.size
    if n == 0:
        return
    same_next = np.zeros(n, dtype=bool)
    same_next[:-1] = ka[1:] == ka[:-1]
    gap_ahead = np.full(n, np.inf)
    j = np.flatnonzero(same_next)
    gap_ahead[j] = s[ia[j + 1]] - s[ia[j]] - veh.length[ia[j]]
    held_back = (gap_ahead < 3.0 * v[ia] + 20.0) & (v[ia] < 0.9 * veh.v0[ia])
    rate = p.lane_change_rate + p.lane_change_incentive_rate * held_back
    changing = (t - lc_start[ia]) < lc_dur[ia]
    try_it = (rng.random(n) < rate * interval) & ~changing
    for j in np.flatnonzero(try_it):
        i = ia[j]
        k = ka[j]
        lane = k % LANES_PER_DIRECTION
        options = [lane + d for d in (-1, 1) if 0 <= lane + d < LANES_PER_DIRECTION]
        best, best_gap = None, -np.inf
        for target in options:
            tk = k - lane + target
            lo = np.searchsorted(ka, tk, "left")
            hi = np.searchsorted(ka, tk, "right")
            pos = lo + np.searchsorted(s[ia[lo:hi]], s[i])
            lead_gap = s[ia[pos]] - s[i] - veh.length[i] if pos < hi else np.inf
            if lead_gap < veh.min_gap[i] + 0.6 * v[i]:
                continue
            if pos - 1 >= lo:
                f = ia[pos - 1]
                back_gap = s[i] - s[f] - veh.length[f]
                if back_gap < veh.min_gap[f] + 0.5 * v[f] + 1.5 * max(v[f] - v[i], 0.0):
                    continue
            if held_back[j] and lead_gap < gap_ahead[j] * 1.3 + 10.0:
                continue    # no better than staying
            if lead_gap > best_gap:
                best, best_gap = target, lead_gap
        if best is None:
            continue
        u = np.clip((t - lc_start[i]) / lc_dur[i], 0.0, 1.0)
        y_now = y_from[i] + (y_to[i] - y_from[i]) * (0.5 - 0.5 * np.cos(np.pi * u))
        y_from[i] = y_now
        y_to[i] = _lane_centre(veh.direction[i:i + 1], np.array([best]))[0]
        lc_start[i] = t
        lc_dur[i] = rng.uniform(*p.lane_change_duration)
        key[i] = k - lane + best


# ----------------------------------------------------------------------------------------------
# Ground truth
# ----------------------------------------------------------------------------------------------


@dataclass
class _Track:
    """One vehicle's recorded trajectory; `a:b` is the part inside the corridor (its GT)."""

    vid: int
    direction: int
    k0: int             # GT frame of the first recorded sample
    s: np.ndarray
    y: np.ndarray
    v: np.ndarray
    a: int
    b: int

    @property
    def t0(self) -> float:
        return (self.k0 + self.a) * DT

    @property
    def t1(self) -> float:
        return (self.k0 + self.b - 1) * DT

    def at(self, t: np.ndarray, arr: np.ndarray) -> np.ndarray:
        """`arr` linearly interpolated at times `t` (s after start_time)."""
        return np.interp(t / DT - self.k0, np.arange(arr.size, dtype=np.float64), arr)


def _x_of(direction: int, s: np.ndarray) -> np.ndarray:
    return X_MIN + s if direction > 0 else X_MAX - s


def _tracks(traffic: _Traffic) -> list[_Track]:
    """Per-vehicle trajectories from the step-major record, keeping vehicles seen in the corridor."""
    step = np.repeat(np.arange(traffic.n_steps), np.diff(traffic.step_offsets))
    order = np.argsort(traffic.vid, kind="stable")     # rows of a vehicle stay in frame order
    vid = traffic.vid[order]
    starts = np.flatnonzero(np.r_[True, vid[1:] != vid[:-1]])
    ends = np.r_[starts[1:], vid.size]
    tracks = []
    for lo, hi in zip(starts, ends):
        rows = order[lo:hi]
        s = traffic.s[rows]
        a = int(np.searchsorted(s, 0.0, "left"))
        b = int(np.searchsorted(s, SEGMENT_LENGTH, "right"))
        if b - a < 2:
            continue
        i = int(vid[lo])
        tracks.append(_Track(i, int(traffic.vehicles.direction[i]), int(step[rows[0]]), s,
                             traffic.y[rows], traffic.v[rows], a, b))
    # GT in order of first appearance, as a labelling tool would list it.
    tracks.sort(key=lambda tr: (tr.t0, tr.direction, tr.vid))
    return tracks


class _ObjectIds:
    """MongoDB-style ObjectIds: 4 bytes of epoch seconds, then 8 random bytes; never repeated."""

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._seen: set[str] = set()

    def new(self, epoch: float) -> str:
        while True:
            oid = f"{int(epoch) & 0xFFFFFFFF:08x}{int(self._rng.integers(0, 2**63)):016x}"
            if oid not in self._seen:
                self._seen.add(oid)
                return oid


def _round(arr: np.ndarray, decimals: int) -> list[float]:
    return np.round(arr, decimals).tolist()


def _node_of(cameras: np.ndarray, x: float, per_node: int) -> int:
    return int(np.searchsorted(cameras, x)) // per_node + 1


def _gt_document(p: ScenarioPreset, tr: _Track, veh: _Vehicles, oid: str, cameras: np.ndarray) -> dict:
    steps = tr.k0 + np.arange(tr.a, tr.b)
    t = np.round(p.start_time + steps * DT, 2)      # the exact 0.04 s grid, as decimal JSON
    x = _x_of(tr.direction, tr.s[tr.a:tr.b])
    n = t.size
    i = tr.vid
    xr = _round(x, 3)
    return {
        "_id": {"$oid": oid},
        "timestamp": t.tolist(),
        "x_position": xr,
        "y_position": _round(tr.y[tr.a:tr.b], 3),
        "length": [round(float(veh.length[i]), 3)] * n,
        "width": [round(float(veh.width[i]), 3)] * n,
        "height": [round(float(veh.height[i]), 3)] * n,
        "direction": tr.direction,
        "first_timestamp": float(t[0]),
        "last_timestamp": float(t[-1]),
        "starting_x": xr[0],
        "ending_x": xr[-1],
        "coarse_vehicle_class": VEHICLE_CLASSES[int(veh.cls[i])].code,
        "compute_node_id": _node_of(cameras, float(x[0]), p.cameras_per_node),
    }


# ----------------------------------------------------------------------------------------------
# Tracking errors: GT -> RAW fragments
# ----------------------------------------------------------------------------------------------


@dataclass
class _PlannedFragment:
    """A planned RAW fragment: consecutive pieces of vehicle trajectories, (vid, t_from, t_to)."""

    pieces: list[tuple[int, float, float]]
    swapped: bool = False


def _camera_layout(p: ScenarioPreset, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Camera boundaries (x, ft) along the corridor and the width of the blind zone after each."""
    bounds = []
    x = X_MIN + rng.uniform(0.3, 1.0) * p.camera_spacing[1]
    while x < X_MAX - 50.0:
        bounds.append(x)
        x += rng.uniform(*p.camera_spacing)
    bounds = np.asarray(bounds)
    return bounds, rng.uniform(*p.blind_zone, bounds.size)


def _plan_observations(p: ScenarioPreset, tr: _Track, cameras: np.ndarray, blind: np.ndarray,
                       rng: np.random.Generator) -> list[tuple[float, float]]:
    """When the tracker follows this vehicle: its GT interval cut by hand-off failures and dropouts.

    Returns (t_from, t_to) intervals in s after start_time, in time order.
    """
    s = tr.s[tr.a:tr.b]
    t = (tr.k0 + np.arange(tr.a, tr.b)) * DT
    tg0, tg1 = float(t[0]), float(t[-1])
    breaks: list[tuple[float, float]] = []      # (tracking lost at, re-acquired at)
    for xb, w in zip(cameras, blind):
        lo_x, hi_x = xb, xb + w
        s_lo, s_hi = (lo_x - X_MIN, hi_x - X_MIN) if tr.direction > 0 else (X_MAX - hi_x, X_MAX - lo_x)
        if s[-1] < s_lo or s[0] > s_hi:
            continue
        i_lo = int(np.searchsorted(s, s_lo, "left"))
        i_hi = min(int(np.searchsorted(s, s_hi, "right")), s.size - 1)
        t_lost, t_clear = float(t[min(i_lo, s.size - 1)]), float(t[i_hi])
        starts_inside = s[0] >= s_lo
        if starts_inside or rng.random() < p.handoff_failure:
            delay = rng.lognormal(math.log(p.reacquire_delay[0]), p.reacquire_delay[1])
            breaks.append((t_lost, t_clear + max(delay, p.gap_bounds[0])))
    span = tg1 - tg0
    for t_drop in np.sort(rng.uniform(tg0, tg1, rng.poisson(p.dropout_rate * span))):
        gap = float(np.clip(rng.lognormal(math.log(p.dropout_gap[0]), p.dropout_gap[1]), *p.gap_bounds))
        breaks.append((float(t_drop), float(t_drop) + gap))
    # A vehicle already in view at the first frame is tracked from it; a new one takes a moment.
    current = tg0 if tg0 <= 0.0 else tg0 + rng.uniform(0.0, 0.3)
    intervals = []
    for lost, found in sorted(breaks):
        if lost <= current:
            current = max(current, found)
            continue
        intervals.append((current, lost))
        current = found
    if current < tg1:
        intervals.append((current, tg1))
    return intervals


def _identity_switches(p: ScenarioPreset, traffic: _Traffic, fragments: list[_PlannedFragment],
                       by_vehicle: dict[int, list[int]], rng: np.random.Generator) -> None:
    """Swap the tails of two fragments on neighbouring vehicles, as a tracker does after an occlusion.

    Both fragments then cover two vehicles; each is labelled by its majority vehicle.
    """
    margin = 0.4
    direction = traffic.vehicles.direction
    for f_idx, frag in enumerate(fragments):
        if frag.swapped or rng.random() >= p.id_switch_attempt:
            continue
        a_vid, a0, a1 = frag.pieces[0]
        if a1 - a0 < 2 * margin + 0.2:
            continue
        ts = float(rng.uniform(a0 + margin, a1 - margin))
        k = int(round(ts / DT))
        lo, hi = traffic.step_offsets[k], traffic.step_offsets[k + 1]
        vids = traffic.vid[lo:hi]
        me = np.flatnonzero(vids == a_vid)
        if me.size == 0:
            continue
        ss, yy = traffic.s[lo:hi], traffic.y[lo:hi]
        ds = np.abs(ss - ss[me[0]])
        dy = np.abs(yy - yy[me[0]])
        near = np.flatnonzero((direction[vids] == direction[a_vid]) & (vids != a_vid)
                              & (ds <= p.id_switch_radius[0]) & (dy <= p.id_switch_radius[1]))
        for j in near[np.argsort(ds[near] + dy[near], kind="stable")]:
            b_vid = int(vids[j])
            for g_idx in by_vehicle.get(b_vid, []):
                other = fragments[g_idx]
                _, b0, b1 = other.pieces[0]
                if g_idx != f_idx and not other.swapped and b0 + margin < ts < b1 - margin:
                    frag.pieces = [(a_vid, a0, ts), (b_vid, ts, b1)]
                    other.pieces = [(b_vid, b0, ts), (a_vid, ts, a1)]
                    frag.swapped = other.swapped = True
                    break
            if frag.swapped:
                break


def _correlated_noise(rng: np.random.Generator, n: int, sigma: float, rho: float) -> np.ndarray:
    """Zero-mean AR(1)-like noise with marginal sd `sigma`: tracker outputs are smoothed, not white."""
    taps = 1 if rho <= 0 else max(1, int(math.ceil(math.log(0.01) / math.log(rho))))
    kernel = rho ** np.arange(taps)
    kernel /= math.sqrt(float(np.sum(kernel ** 2)))
    return sigma * np.convolve(rng.normal(size=n + taps - 1), kernel, "valid")


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float, rho: float, timescale: float) -> np.ndarray:
    """Noise with marginal sd `sigma`: white noise under a Gaussian kernel of sd `timescale` seconds
    (smooth, so its derivatives are small, like a filtered tracker state), or AR(1) noise with
    coefficient `rho` when `timescale` is 0."""
    if timescale <= 0:
        return _correlated_noise(rng, n, sigma, rho)
    k = timescale / DT
    half = max(1, int(math.ceil(3.0 * k)))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / k) ** 2)
    kernel /= math.sqrt(float(np.sum(kernel ** 2)))
    return sigma * np.convolve(rng.normal(size=n + 2 * half), kernel, "valid")


def _sample_times(p: ScenarioPreset, t_from: float, t_to: float, rng: np.random.Generator) -> np.ndarray:
    """Tracker sample times: a 25 Hz camera clock with its own phase, jitter and the odd lost frame."""
    phase = rng.uniform(0.0, DT)
    k_lo = math.ceil((t_from - phase) / DT - 1e-9)
    k_hi = math.floor((t_to - phase) / DT + 1e-9)
    if k_hi < k_lo:
        return np.empty(0)
    t = phase + np.arange(k_lo, k_hi + 1) * DT
    if t.size > 2 and p.frame_drop > 0:
        keep = rng.random(t.size) >= p.frame_drop
        keep[0] = keep[-1] = True
        t = t[keep]
    jitter = np.clip(rng.normal(0.0, p.time_jitter, t.size), -3 * p.time_jitter, 3 * p.time_jitter)
    return t + jitter


def _confidence(p: ScenarioPreset, t: np.ndarray, confidence_mean: float, rng: np.random.Generator,
                edges: tuple[bool, bool] = (True, True)) -> np.ndarray:
    """Per-sample detection confidence: a fragment level, per-sample variation, dips where the track
    was lost or re-acquired (`edges`: (start, end) is a tracking break, not the corridor's or the
    recording's boundary), a reporting floor."""
    n = t.size
    mean = float(np.clip(rng.normal(confidence_mean, p.confidence_fragment_sd), 0.05, 0.99))
    kappa = p.confidence_concentration
    if p.confidence_timescale > 0:
        # Logit-normal with the Beta's logit spread (var ~ 1/a + 1/b), varying slowly along the track.
        spread = 1.0 / math.sqrt(kappa * mean * (1.0 - mean))
        logit = math.log(mean / (1.0 - mean)) + _smooth_noise(rng, n, spread, 0.0, p.confidence_timescale)
        drop_start, drop_end = (d if e else 0.0 for d, e in zip(p.confidence_edge_drop, edges))
        if drop_start > 0 or drop_end > 0:
            tau = p.confidence_edge_time
            logit = logit - drop_start * np.exp(-(t - t[0]) / tau) - drop_end * np.exp(-(t[-1] - t) / tau)
        conf = 1.0 / (1.0 + np.exp(-logit))
    else:
        conf = rng.beta(mean * kappa, (1 - mean) * kappa, n)
    # pp_lite drops samples below conf_threshold 0.2; real tracks have a few such frames.
    low = rng.random(n) < p.low_confidence_share
    conf[low] = rng.uniform(0.05, 0.4, int(low.sum()))
    floor = p.confidence_floor
    if floor > 0:
        # The tracker does not report detections below its threshold: reflect them above it.
        conf = np.where(conf < floor, np.minimum(2 * floor - conf, 1.0), conf)
    return np.clip(conf, 0.01, 1.0)


def _measure(p: ScenarioPreset, truth: Mapping[str, np.ndarray], confidence_mean: float,
             rng: np.random.Generator, edges: tuple[bool, bool] = (True, True)) -> dict[str, np.ndarray]:
    """Apply the per-fragment bias and correlated per-sample noise of the tracker to true states."""
    n = truth["t"].size
    rho = p.noise_correlation
    tau = p.noise_timescale
    k = math.exp(rng.normal(0.0, p.noise_fragment_spread)) if p.noise_fragment_spread > 0 else 1.0
    out = {"t": truth["t"]}
    out["x"] = truth["x"] + rng.normal(0, p.position_bias[0]) + _smooth_noise(rng, n, k * p.position_sigma[0], rho, tau)
    out["y"] = truth["y"] + rng.normal(0, p.position_bias[1]) + _smooth_noise(rng, n, k * p.position_sigma[1], rho, tau)
    for name, rel, sd in zip(("length", "width", "height"), p.dimension_bias, p.dimension_sigma):
        true = truth[name]
        est = true * (1.0 + rng.normal(0, rel)) + _smooth_noise(rng, n, k * sd, rho, tau)
        out[name] = np.maximum(est, 0.5 * true)     # a box is never degenerate
    speed = truth["v"] + rng.normal(0, p.speed_bias) + _smooth_noise(rng, n, k * p.speed_sigma, rho,
                                                                     p.speed_timescale or tau)
    if p.speed_start_sigma > 0:
        # A new track's filter starts from a poor speed estimate and converges.
        elapsed = truth["t"] - truth["t"][0]
        speed = speed + rng.normal(0, p.speed_start_sigma) * np.exp(-elapsed / p.speed_start_decay)
    out["v"] = np.maximum(speed, 0.0)
    out["conf"] = _confidence(p, truth["t"], confidence_mean, rng, edges)
    return out


def _truth_of(fragment: _PlannedFragment, tracks: dict[int, _Track], veh: _Vehicles, t: np.ndarray
              ) -> tuple[dict[str, np.ndarray], list[tuple[int, int]]]:
    """True states at the sample times, piece by piece, and (vid, samples) per covered vehicle."""
    cols = {name: np.empty(t.size) for name in ("x", "y", "v", "length", "width", "height")}
    shares = []
    cut = np.searchsorted(t, [piece[2] for piece in fragment.pieces[:-1]], "left")
    bounds = np.r_[0, cut, t.size]
    for (vid, _, _), lo, hi in zip(fragment.pieces, bounds[:-1], bounds[1:]):
        if hi <= lo:
            continue
        tr = tracks[vid]
        tt = t[lo:hi]
        cols["x"][lo:hi] = _x_of(tr.direction, tr.at(tt, tr.s))
        cols["y"][lo:hi] = tr.at(tt, tr.y)
        cols["v"][lo:hi] = tr.at(tt, tr.v)
        cols["length"][lo:hi] = veh.length[vid]
        cols["width"][lo:hi] = veh.width[vid]
        cols["height"][lo:hi] = veh.height[vid]
        shares.append((vid, int(hi - lo)))
    cols["t"] = t
    return cols, shares


def _false_positive_truth(p: ScenarioPreset, duration: float, rng: np.random.Generator
                          ) -> tuple[int, dict[str, np.ndarray]] | None:
    """A short phantom track: clutter that moves with traffic or sits still (shadows, signs)."""
    length_s = rng.uniform(*p.false_positive_duration)
    t_from = rng.uniform(0.0, max(duration - length_s, 0.0))
    t = _sample_times(p, t_from, t_from + length_s, rng)
    if t.size < 2:
        return None
    direction = int(rng.choice(DIRECTIONS))
    lane = int(rng.integers(0, LANES_PER_DIRECTION))
    speed = p.desired_speed[0] * rng.uniform(0.6, 1.1) if rng.random() < 0.5 else rng.uniform(0.0, 3.0)
    x0 = rng.uniform(X_MIN + 50.0, X_MAX - 50.0)
    x = x0 + direction * speed * (t - t[0])
    c = VEHICLE_CLASSES[int(rng.choice(len(VEHICLE_CLASSES), p=np.asarray(p.class_mix)))]
    length = rng.uniform(c.length[0], c.length[1]) if c.uniform_length else c.length[0]
    y = _lane_centre(np.array([direction]), np.array([lane]))[0] + rng.normal(0.0, 1.5)
    return direction, {
        "t": t, "x": x, "y": np.full(t.size, y), "v": np.full(t.size, speed),
        "length": np.full(t.size, length), "width": np.full(t.size, c.width[0]),
        "height": np.full(t.size, c.height[0]),
    }


def _raw_document(p: ScenarioPreset, meas: Mapping[str, np.ndarray], direction: int,
                  gt_ids: Sequence[str], cameras: np.ndarray) -> dict:
    t = np.round(p.start_time + meas["t"], 4)
    x = _round(meas["x"], 3)
    return {
        "_id": None,                 # assigned once the set is in its final order
        "timestamp": t.tolist(),
        "x_position": x,
        "y_position": _round(meas["y"], 3),
        "velocity": _round(meas["v"], 3),
        "detection_confidence": _round(meas["conf"], 4),
        "length": _round(meas["length"], 3),
        "width": _round(meas["width"], 3),
        "height": _round(meas["height"], 3),
        "direction": direction,
        "first_timestamp": float(t[0]),
        "last_timestamp": float(t[-1]),
        "starting_x": x[0],
        "ending_x": x[-1],
        "compute_node_id": _node_of(cameras, x[0], p.cameras_per_node),
        "local_fragment_id": None,
        "gt_ids": [[{"$oid": g}] for g in gt_ids],
    }


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def simulate(preset: "str | ScenarioPreset", seed: int, duration: float | None = None, *,
             error_model: Mapping[str, Any] | None = None, randomize: bool = False
             ) -> tuple[list[dict], list[dict]]:
    """Generate one scenario instance: GT trajectories and the RAW tracker fragments made from them.

    Parameters
    ----------
    preset : "i" (free flow), "ii" (snow, slow) or "iii" (congested stop-and-go); see `PRESETS`. Or a
        `ScenarioPreset` (e.g. `dataclasses.replace(PRESETS["i"], demand_per_lane=0.4)`) to change traffic too.
    seed : non-negative integer; the same (preset, seed, duration, error_model, randomize) gives identical
        documents.
    duration : seconds of GT to generate; None uses the preset's (60, 51, 50 s).
    error_model : ScenarioPreset fields to override (usually `ERROR_MODEL_FIELDS`, e.g. a
        `draw_error_model` result); unknown keys raise ValueError.
    randomize : draw the error model from `ERROR_RANGES` with a generator seeded from `seed` (applied
        before `error_model`, which can pin fields). `resolve_preset` gives the preset actually run.

    Returns
    -------
    (gt_docs, raw_docs) : lists of I-24 documents (plain JSON types). GT is ordered by first
    appearance, RAW by `last_timestamp` (the order a tracker emits fragments). Each RAW fragment's
    `gt_ids` lists the GT vehicles it covers, majority first; false positives carry an id that
    matches no GT vehicle.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    p = resolve_preset(preset, int(seed), error_model=error_model, randomize=randomize)
    if duration is None:
        duration = p.duration
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) \
            or not 1.0 <= duration <= 3600.0:
        raise ValueError(f"duration must be between 1 and 3600 s, got {duration!r}")
    duration = float(duration)
    # The preset's position in PRESETS is mixed into the seed, so "i" and "ii" with one seed differ.
    rng = np.random.default_rng([int(seed), _preset_index(p)])

    traffic = _simulate_traffic(p, duration, rng)
    veh = traffic.vehicles
    tracks = _tracks(traffic)
    cameras, blind = _camera_layout(p, rng)
    oids = _ObjectIds(rng)

    gt_docs, gt_oid = [], {}
    for tr in tracks:
        gt_oid[tr.vid] = oids.new(p.start_time + tr.t0)
        gt_docs.append(_gt_document(p, tr, veh, gt_oid[tr.vid], cameras))

    fragments: list[_PlannedFragment] = []
    by_vehicle: dict[int, list[int]] = {}
    for tr in tracks:
        for t_from, t_to in _plan_observations(p, tr, cameras, blind, rng):
            by_vehicle.setdefault(tr.vid, []).append(len(fragments))
            fragments.append(_PlannedFragment([(tr.vid, t_from, t_to)]))
    _identity_switches(p, traffic, fragments, by_vehicle, rng)

    track_of = {tr.vid: tr for tr in tracks}
    raw_docs = []
    for frag in fragments:
        t = _sample_times(p, frag.pieces[0][1], frag.pieces[-1][2], rng)
        if t.size < 2:
            continue    # the tracker never reports a single detection as a fragment
        truth, shares = _truth_of(frag, track_of, veh, t)
        # Which ends are tracking breaks (lost or re-acquired), not the vehicle entering the corridor or
        # the recording's first / last frame: the confidence dips there.
        first, last = track_of[frag.pieces[0][0]], track_of[frag.pieces[-1][0]]
        edges = (frag.pieces[0][1] > max(first.t0, 0.0) + 0.35, frag.pieces[-1][2] < last.t1 - 1e-6)
        meas = _measure(p, truth, p.confidence_mean, rng, edges)
        total = {}
        for vid, count in shares:
            total[vid] = total.get(vid, 0) + count
        ranked = sorted(total, key=lambda vid: -total[vid])      # stable: ties keep time order
        raw_docs.append(_raw_document(p, meas, track_of[ranked[0]].direction,
                                      [gt_oid[vid] for vid in ranked], cameras))
    for _ in range(rng.poisson(p.false_positives_per_minute * duration / 60.0)):
        phantom = _false_positive_truth(p, duration, rng)
        if phantom is None:
            continue
        direction, truth = phantom
        meas = _measure(p, truth, 0.55, rng)
        # A fresh id that labels no GT vehicle, so a false positive is never part of a positive pair.
        raw_docs.append(_raw_document(p, meas, direction, [oids.new(p.start_time + truth["t"][0])], cameras))

    raw_docs.sort(key=lambda d: (d["last_timestamp"], d["first_timestamp"], d["direction"], d["starting_x"]))
    local_ids: dict[int, int] = {}
    for doc in sorted(raw_docs, key=lambda d: (d["first_timestamp"], d["last_timestamp"], d["starting_x"])):
        node = doc["compute_node_id"]
        local_ids[node] = local_ids.get(node, 0) + 1
        doc["local_fragment_id"] = local_ids[node]
        doc["_id"] = {"$oid": oids.new(doc["first_timestamp"])}
    return gt_docs, raw_docs


def _quantiles(values: Sequence[float], qs=(0.05, 0.25, 0.5, 0.75, 0.95)) -> dict[str, float]:
    if len(values) == 0:
        return {f"p{int(q * 100):02d}": float("nan") for q in qs}
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{int(q * 100):02d}": float(np.quantile(arr, q)) for q in qs}


def scenario_stats(gt_docs: Sequence[Mapping[str, Any]], raw_docs: Sequence[Mapping[str, Any]]) -> dict:
    """Summary statistics of a scenario instance, computed from the documents alone.

    Parameters
    ----------
    gt_docs : GT trajectories (no velocity; speed is taken from x over time).
    raw_docs : RAW fragments labelled by `gt_ids` (majority vehicle first).

    Returns
    -------
    dict of plain numbers and lists: vehicles and fragments (total and per direction), fragments per
    vehicle, GT speed (mean, min, max, 5th/95th percentiles, share below 5 ft/s), gaps between
    consecutive fragments of one vehicle (quantiles, share in 0.1-4 s, overlaps), identity switches
    (fragments covering more than one vehicle), false positives (fragments labelled with no GT
    vehicle) and their ids, short fragments (<= 3 samples), mean detection confidence.
    """
    gt_ids = {}
    speeds = []
    for doc in gt_docs:
        gid = doc["_id"]["$oid"] if isinstance(doc["_id"], Mapping) else str(doc["_id"])
        gt_ids[gid] = doc
        t = np.asarray(doc["timestamp"], dtype=np.float64)
        x = np.asarray(doc["x_position"], dtype=np.float64)
        if t.size > 1:
            speeds.append(np.abs(np.diff(x) / np.diff(t)))
    speed = np.concatenate(speeds) if speeds else np.zeros(1)

    per_vehicle: dict[str, list[tuple[float, float]]] = {}
    false_ids, switches, short, conf_sum, conf_n, samples = [], 0, 0, 0.0, 0, 0
    for doc in raw_docs:
        gid = gt_id_of(doc)
        n = len(doc["timestamp"])
        samples += n
        short += n <= 3
        conf = doc.get("detection_confidence")
        if conf:
            conf_sum += float(np.sum(conf))
            conf_n += len(conf)
        if gid is None or gid not in gt_ids:
            false_ids.append(gid)
            continue
        switches += len(doc.get("gt_ids") or []) > 1
        per_vehicle.setdefault(gid, []).append((float(doc["timestamp"][0]), float(doc["timestamp"][-1])))
    gaps = []
    for spans in per_vehicle.values():
        spans.sort()
        gaps.extend(b[0] - a[1] for a, b in zip(spans[:-1], spans[1:]))
    gaps_arr = np.asarray(gaps, dtype=np.float64)
    n_gt, n_raw = len(gt_docs), len(raw_docs)

    def count_dir(docs, d):
        return sum(1 for doc in docs if doc["direction"] == d)

    t_all = [doc["timestamp"][0] for doc in gt_docs] + [doc["timestamp"][-1] for doc in gt_docs]
    return {
        "vehicles": n_gt,
        "vehicles_eb": count_dir(gt_docs, 1),
        "vehicles_wb": count_dir(gt_docs, -1),
        "vehicles_observed": len(per_vehicle),
        "fragments": n_raw,
        "fragments_eb": count_dir(raw_docs, 1),
        "fragments_wb": count_dir(raw_docs, -1),
        "fragments_per_vehicle": n_raw / n_gt if n_gt else float("nan"),
        "raw_samples": samples,
        "short_fragments": short,
        "duration_s": float(max(t_all) - min(t_all)) if t_all else 0.0,
        "speed_mean": float(speed.mean()),
        "speed_min": float(speed.min()),
        "speed_max": float(speed.max()),
        "speed_p05": float(np.quantile(speed, 0.05)),
        "speed_p95": float(np.quantile(speed, 0.95)),
        "stopped_share": float(np.mean(speed < 5.0)),
        "gaps": len(gaps),
        "gap_quantiles": _quantiles(gaps),
        "gap_share_0p1_4s": float(np.mean((gaps_arr >= 0.1) & (gaps_arr <= 4.0))) if gaps else float("nan"),
        "gap_overlaps": int(np.sum(gaps_arr < 0)),
        "id_switches": switches,
        "false_positives": len(false_ids),
        "false_positive_gt_ids": false_ids,
        "detection_confidence_mean": conf_sum / conf_n if conf_n else float("nan"),
    }


def write_scenario(preset: "str | ScenarioPreset", seed: int, out_dir: str | os.PathLike,
                   duration: float | None = None, *, error_model: Mapping[str, Any] | None = None,
                   randomize: bool = False) -> dict:
    """Simulate a scenario and write `out_dir/GT_{s}.json`, `out_dir/RAW_{s}.json` and `out_dir/SIM_{s}.json`.

    Parameters
    ----------
    preset, seed, duration, error_model, randomize : as for `simulate`; `s` is the preset's name.
    out_dir : folder to write into (created if missing); existing files are replaced atomically.

    Returns
    -------
    `scenario_stats` of the written sets, plus "preset", "seed", "gt_path", "raw_path", "sim_path",
    "randomize" and "error_model" (every `ERROR_MODEL_FIELDS` value the run used). SIM_{s}.json records
    those and the simulator version, so the run can be repeated with `--error-model SIM_{s}.json`.
    """
    p = resolve_preset(preset, seed, error_model=error_model, randomize=randomize)
    gt_docs, raw_docs = simulate(p, seed, duration)
    name = p.name
    out_dir = os.fspath(out_dir)
    gt_path = os.path.join(out_dir, f"GT_{name}.json")
    raw_path = os.path.join(out_dir, f"RAW_{name}.json")
    sim_path = os.path.join(out_dir, f"SIM_{name}.json")
    save_fragments(gt_path, gt_docs)
    save_fragments(raw_path, raw_docs)
    stats = scenario_stats(gt_docs, raw_docs)
    stats.update(preset=name, seed=int(seed), gt_path=gt_path, raw_path=raw_path, sim_path=sim_path,
                 randomize=bool(randomize), error_model=error_model_of(p))
    record = {"simulator_version": SIMULATOR_VERSION, "preset": name, "seed": int(seed),
              "duration": p.duration if duration is None else float(duration), "randomize": bool(randomize),
              "error_model": error_model_of(p),
              "stats": {k: v for k, v in stats.items() if k not in ("false_positive_gt_ids", "error_model")}}
    atomic_write_text(sim_path, json.dumps(record, indent=1) + "\n")
    return stats


def _load_error_model(text: str) -> dict:
    """--error-model: inline JSON, or a JSON file (a SIM_{s}.json record or a plain field mapping)."""
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text)
        else:
            with open(text, encoding="utf-8") as fh:
                data = json.load(fh)
    except OSError as exc:
        raise click.ClickException(f"--error-model: cannot read {text}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"--error-model: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict) and isinstance(data.get("error_model"), dict):
        data = data["error_model"]
    if not isinstance(data, dict):
        raise click.ClickException("--error-model must be a JSON object of ScenarioPreset fields")
    return data


def _stats_line(stats: Mapping[str, Any]) -> str:
    g = stats["gap_quantiles"]
    return (f"{stats['preset']} seed={stats['seed']}: {stats['vehicles']} vehicles "
            f"(EB {stats['vehicles_eb']} / WB {stats['vehicles_wb']}), {stats['fragments']} fragments "
            f"({stats['fragments_per_vehicle']:.2f} per vehicle), speed {stats['speed_mean']:.1f} ft/s "
            f"[{stats['speed_min']:.1f}, {stats['speed_max']:.1f}], gap median {g['p50']:.2f} s "
            f"(p95 {g['p95']:.2f}), {stats['id_switches']} id switches, {stats['false_positives']} false "
            f"positives{', error model drawn from ERROR_RANGES' if stats.get('randomize') else ''} -> "
            f"{stats['gt_path']}, {stats['raw_path']}" + (f", {stats['sim_path']}" if "sim_path" in stats else ""))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("scenario", metavar="{i,ii,iii|all}")
@click.option("--seed", type=int, required=True,
              help="Non-negative random seed; the same seed always writes identical files.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for GT_<scenario>.json and RAW_<scenario>.json (created if missing).")
@click.option("--duration", type=float, default=None,
              help="Seconds of traffic to simulate instead of the preset's (60, 51, 50 s), e.g. 600 "
                   "for load tests; between 1 and 3600.")
@click.option("--randomize", is_flag=True, default=False,
              help="Draw the tracker-error model from ERROR_RANGES (seeded by --seed; recorded in SIM_<scenario>.json).")
@click.option("--error-model", "error_model", default=None, metavar="JSON",
              help="Override preset fields: inline JSON ('{\"speed_sigma\": 2}') or a JSON file, e.g. a "
                   "SIM_<scenario>.json written earlier (applied after --randomize).")
def main(scenario: str, seed: int, out_dir: str, duration: float | None, randomize: bool,
         error_model: str | None) -> None:
    """Simulate the I-24 MOTION benchmark scenarios and write GT and RAW fragment sets.

    SCENARIO is i (free flow, 60 s), ii (slow traffic in snow, 51 s), iii (congested
    stop-and-go, 50 s) or all. Prints one statistics line per scenario; SIM_<scenario>.json records
    the error model used.
    """
    if scenario != "all" and scenario not in PRESETS:
        raise click.ClickException(f"unknown scenario {scenario!r}; choose one of i, ii, iii, all")
    if seed < 0:
        raise click.ClickException(f"--seed must be non-negative, got {seed}")
    if duration is not None and not (math.isfinite(duration) and 1.0 <= duration <= 3600.0):
        raise click.ClickException(f"--duration must be between 1 and 3600 s, got {duration}")
    overrides = _load_error_model(error_model) if error_model is not None else None
    for name in SCENARIO_NAMES if scenario == "all" else (scenario,):
        try:
            stats = write_scenario(name, seed, out_dir, duration, error_model=overrides, randomize=randomize)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
        click.echo(_stats_line(stats))
