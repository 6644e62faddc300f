"""Promote a run to the artifact pp_lite loads: export it, and only if every export check passes, swap it in.

    promote runs/tune/mlp-tpr_at_fpr/trial_7                # -> artifacts/mlp, old one kept as artifacts/mlp.prev
    promote runs/tcn --to artifacts_demo/tcn

The run is exported into a staging folder beside the destination (same file system, so the swap is two
renames); a failed export leaves the current artifact and its `.prev` untouched. On success the current
artifact becomes `<artifact>.prev` (replacing an older `.prev`) and the new export takes its place.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Callable

import click

from training.runs import load_run

__all__ = ["PromotionRefused", "promote", "export_with_checks", "main"]


class PromotionRefused(Exception):
    """The run cannot be promoted (unfinished run, failed export); the artifact was left as it was."""


Exporter = Callable[[str, str, str], None]


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
            exporter: Exporter | None = None, say: Callable[[str], None] | None = None) -> str:
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

    Returns
    -------
    The artifact folder.

    Raises
    ------
    PromotionRefused
        The run is unfinished or the export failed; nothing at `dest` or `dest.prev` changed.
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
        kept = _swap_in(out, dest, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"promoted {run_dir} -> {dest}" + (f" (previous artifact kept as {dest}.prev)" if kept else ""))
    return dest


@click.command("promote")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--to", "dest", default=None,
              help="Artifact folder to replace (default artifacts/<model>). The current one is kept as "
                   "<folder>.prev, replacing an older .prev; nothing changes unless every export check passes.")
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False),
              help="Folder the export loads the run's calibration and test pairs from (default: the one recorded "
                   "in the run's dataset.json; set it for runs trained on another machine).")
def main(run_dir, dest, data_dir):
    """Export RUN_DIR (calibration folded in, every export check) and make it the artifact pp_lite loads."""
    try:
        promote(run_dir, dest, data_dir=data_dir)
    except PromotionRefused as exc:
        raise click.ClickException(str(exc)) from None
