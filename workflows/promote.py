"""Promote a run to the artifact pp_lite loads: export it, and only if every export check passes, swap it in.

    promote runs/tune/mlp-tpr_at_fpr/trial_7                # -> artifacts/mlp, old one kept as artifacts/mlp.prev
    promote runs/tcn --to artifacts_demo/tcn
    promote runs/tune/mlp-idf1/trial_3 --shift-guard      # refuse unless the shift suite's worst case holds

The run is exported into a staging folder beside the destination (same file system, so the swap is two
renames); a failed export leaves the current artifact and its `.prev` untouched. On success the current
artifact becomes `<artifact>.prev` (replacing an older `.prev`) and the new export takes its place.

With `--shift-guard` the staged export is first run through the shift suite (`workflows.shift_suite`,
quick profile by default: 20 s scenarios, held-out seed 201, every preset and shift) next to
Bhattacharyya; its worst case (min over preset x shift of IDF1 - Bhattacharyya IDF1) is printed with
the per-cell table and recorded as `manifest["robustness"]`, and the promotion is refused when the worst
case is below -tolerance (0.005) unless `--force`.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Callable

import click

from runtime.files import atomic_write_text
from training.runs import load_run

from . import shift_suite

__all__ = ["PromotionRefused", "ShiftGuard", "promote", "export_with_checks", "shift_check", "main"]


class PromotionRefused(Exception):
    """The run cannot be promoted (unfinished run, failed export); the artifact was left as it was."""


Exporter = Callable[[str, str, str], None]


class ShiftGuard:
    """What `promote` checks before the swap: the shift suite's worst case of the candidate must be at least
    -tolerance (refused otherwise, unless `force`). `profile` is a key of `shift_suite.PROFILES`."""

    def __init__(self, tolerance: float = shift_suite.TOLERANCE, profile: str = "quick", force: bool = False,
                 progress: bool = True):
        if profile not in shift_suite.PROFILES:
            raise ValueError(f"unknown shift profile {profile!r}; choose from {', '.join(shift_suite.PROFILES)}")
        if not tolerance >= 0:
            raise ValueError(f"shift tolerance must be >= 0, got {tolerance}")
        self.tolerance, self.profile, self.force, self.progress = float(tolerance), profile, force, progress


def shift_check(artifact: str, label: str, guard: ShiftGuard, say: Callable[[str], None]) -> dict:
    """Run the shift suite on `artifact` and Bhattacharyya; print the per-cell table and the worst case; write
    the robustness record into the artifact's manifest.json (atomically) and return it."""
    payload = shift_suite.run_profile([shift_suite.BHAT, shift_suite.onnx_cost(label, artifact)], guard.profile,
                                      tolerance=guard.tolerance, progress=guard.progress, desc=f"shift {label}")
    record = shift_suite.robustness_record(payload, label, guard.tolerance)
    say(f"shift suite ({guard.profile}: seeds {','.join(map(str, record['seeds']))}, "
        f"{record['duration'] or 'preset'} s scenarios; IDF1 - Bhat IDF1 per cell, * = worst):")
    say(shift_suite.cell_table(payload, [label]))
    say(f"worst case {record['worst']:+.4f} on {record['worst_cell'][0]} / {record['worst_cell'][1]} "
        f"(tolerance {guard.tolerance}; {record['cells_below']}/{record['cells']} cells below): "
        + ("passes" if record["passes"] else "FAILS"))
    manifest_path = os.path.join(artifact, "manifest.json")
    with open(manifest_path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    manifest["robustness"] = record
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
    return record


def export_with_checks(run_dir: str, kind: str, out_dir: str, data_dir: str | None = None,
                       say: Callable[[str], None] | None = None) -> None:
    """`export.export.export_artifact` with its defaults: raises unless every export check passed."""
    from export.export import export_artifact

    export_artifact(kind, run_dir, out_dir, data_dir=data_dir, say=say)


def _swap_in(new: str, dest: str, trash: str) -> bool:
    """Make `new` the artifact at `dest`, keeping the current one as `dest.prev`. Returns whether one was kept."""
    prev = dest + ".prev"
    kept = os.path.exists(dest)
    if kept:
        if os.path.lexists(prev):
            os.rename(prev, os.path.join(trash, "old.prev"))  # deleted with the staging folder
        os.rename(dest, prev)
    os.rename(new, dest)
    return kept


def promote(run_dir: str, dest: str | None = None, *, data_dir: str | None = None,
            exporter: Exporter | None = None, say: Callable[[str], None] | None = None,
            shift_guard: ShiftGuard | None = None) -> str:
    """Export `run_dir` and replace the artifact at `dest` (default `artifacts/<model>`) if the export passes.

    Parameters
    ----------
    run_dir : a finished run folder (with metrics.json and model_config.json).
    dest : artifact folder to replace; its previous content is kept as `<dest>.prev`.
    data_dir : where the export loads the run's calibration and test pairs (default: the folder recorded
        in the run's dataset.json).
    exporter : `exporter(run_dir, kind, out_dir)` writes a validated artifact to `out_dir` or raises
        (default: `export_artifact` with its default operating point, as `export-onnx` runs it).
    say : progress lines (default stderr).
    shift_guard : when given, the staged export is run through the shift suite first (see `shift_check`);
        a worst case below -tolerance refuses the promotion unless `shift_guard.force`.

    Returns
    -------
    The artifact folder.

    Raises
    ------
    PromotionRefused
        The run is unfinished, the export failed, or the shift guard's worst case is below -tolerance;
        nothing at `dest` or `dest.prev` changed.
    """
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    exporter = exporter or (lambda run, kind, out: export_with_checks(run, kind, out, data_dir, say))
    try:
        run = load_run(run_dir)
    except ValueError as exc:
        raise PromotionRefused(str(exc)) from None
    if not run.metrics:
        raise PromotionRefused(f"{run_dir} is not a finished run (no metrics.json yet)")
    if not run.model_config.get("kind"):
        raise PromotionRefused(f"{run_dir}: model_config.json is missing or names no model kind")
    kind = run.model_config["kind"]
    dest = dest or os.path.join("artifacts", kind)
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise PromotionRefused(f"{dest} exists and is not an artifact folder")
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.staging-", dir=parent)
    try:
        out = os.path.join(staging, "artifact")
        say(f"exporting {run_dir} ({kind}) ...")
        try:
            exporter(run_dir, kind, out)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # ExportError, one ValidationError subclass per check, CalibrationFitError
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PromotionRefused(f"export of {run_dir} failed ({reason}); {dest} left unchanged") from None
        if not os.path.isfile(os.path.join(out, "manifest.json")):
            raise PromotionRefused(f"export of {run_dir} produced no manifest.json; {dest} left unchanged")
        if shift_guard is not None:
            from runtime.onnx_cost import ArtifactError

            try:
                record = shift_check(out, kind, shift_guard, say)
            except (ValueError, OSError, ArtifactError) as exc:
                raise PromotionRefused(f"shift suite on {run_dir} failed ({str(exc).splitlines()[0]}); "
                                       f"{dest} left unchanged") from None
            if not record["passes"]:
                if not shift_guard.force:
                    raise PromotionRefused(
                        f"{run_dir}: shift-suite worst case {record['worst']:+.4f} on {record['worst_cell'][0]} / "
                        f"{record['worst_cell'][1]} is below -{shift_guard.tolerance}; {dest} left unchanged "
                        "(--force to promote anyway)")
                say(f"worst case below -{shift_guard.tolerance}, promoted anyway (--force)")
        kept = _swap_in(out, dest, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"promoted {run_dir} -> {dest}" + (f" (previous artifact kept as {dest}.prev)" if kept else ""))
    return dest


@click.command("promote", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--to", "dest", default=None,
              help="Artifact folder to replace (default artifacts/<model>). The current one is kept as "
                   "<folder>.prev, replacing an older .prev; nothing changes unless every export check passes.")
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False),
              help="Folder the export loads the run's calibration and test pairs from (default: the one recorded "
                   "in the run's dataset.json; set it for runs trained on another machine).")
@click.option("--shift-guard", is_flag=True,
              help="Before the swap, run the shift suite (benchmarks/shift.py's core) on the export and "
                   "Bhattacharyya, print the per-cell table and worst case (min over preset x shift of IDF1 - "
                   "Bhattacharyya IDF1), record it as manifest['robustness'], and refuse when it is below "
                   "-SHIFT_TOLERANCE.")
@click.option("--shift-tolerance", type=click.FloatRange(min=0), default=shift_suite.TOLERANCE, show_default=True,
              help="How far below Bhattacharyya the worst cell may be (IDF1).")
@click.option("--shift-quick/--shift-full", "shift_quick", default=True, show_default=True,
              help="Suite profile: quick = 20 s scenarios, held-out seed 201 (a few minutes on 2 cores); "
                   "full = the presets' durations, seeds 201 and 202. Both: presets i, ii, iii and every shift.")
@click.option("--force", is_flag=True, help="With --shift-guard: promote even when the worst case fails (it is "
                                            "still recorded in the manifest).")
def main(run_dir, dest, data_dir, shift_guard, shift_tolerance, shift_quick, force):
    """Export RUN_DIR (calibration folded in, every export check) and make it the artifact pp_lite loads."""
    guard = ShiftGuard(shift_tolerance, "quick" if shift_quick else "full", force) if shift_guard else None
    if force and not shift_guard:
        raise click.UsageError("--force only relaxes --shift-guard")
    try:
        promote(run_dir, dest, data_dir=data_dir, shift_guard=guard)
    except PromotionRefused as exc:
        raise click.ClickException(str(exc)) from None
