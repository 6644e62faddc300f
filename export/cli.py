"""`export-onnx`: export a trained run as a calibrated, validated, checksummed ONNX artifact."""
from __future__ import annotations

import os
import sys

import click

from runtime.version import __version__

from .calibration import DEFAULT_MAX_FPR, DEFAULT_MIN_PRECISION, STRATEGIES
from .specs import SPECS
from .validate import MIN_PARITY_PAIRS

__all__ = ["main"]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return first or type(exc).__name__


@click.command("export-onnx", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", message="%(prog)s, version %(version)s")
@click.option("--model", "kind", required=True, type=click.Choice(list(SPECS)),
              help="Model kind of the run to export.")
@click.option("--run", "run_dir", default=None,
              help="Training run folder (default runs/<model>).")
@click.option("--out", "out_dir", default=None,
              help="Artifact folder to write (default artifacts/<model>). Replaced only if every check passes.")
@click.option("--strategy", type=click.Choice(list(STRATEGIES)), default="fpr_ceiling", show_default=True,
              help="How the operating point z* (cost == 3) is chosen on the calibration split: the highest TPR "
                   "with FPR <= --max-fpr, or the highest TPR with precision >= --min-precision.")
@click.option("--max-fpr", type=click.FloatRange(0.0, 1.0), default=DEFAULT_MAX_FPR, show_default=True,
              help="FPR ceiling on calibration negatives (fpr_ceiling).")
@click.option("--min-precision", type=click.FloatRange(0.0, 1.0), default=DEFAULT_MIN_PRECISION, show_default=True,
              help="Precision floor at the natural class ratio (precision_floor).")
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False),
              help="Folder the run's pairs are loaded from: the pair cache of simulated runs (default: the "
                   "folder recorded in the run's dataset.json), or the RAW_{s}.json folder of real-data runs. "
                   "Required for runs trained on a feature file (.npz), which carry no candidate pairs: RAW files "
                   "there are split by vehicle, otherwise it is a simulated pair cache with the default seeds.")
@click.option("--min-parity-pairs", type=click.IntRange(1), default=MIN_PARITY_PAIRS, show_default=True,
              help="Fewest real test-split pairs the framework-vs-onnxruntime parity check accepts.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def main(kind, run_dir, out_dir, strategy, max_fpr, min_precision, data_dir, min_parity_pairs, quiet):
    """Export a trained run with the calibration folded in: the graph's output is the stitch cost on the
    threshold scale (cost == 3 at the operating point), validated (ONNX checker, parity on real pairs,
    operating point, rates at thresholds 3 and 4) and checksummed in manifest.json."""
    from .export import export_artifact

    run_dir = run_dir or os.path.join("runs", kind)
    out_dir = out_dir or os.path.join("artifacts", kind)
    say = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    try:
        manifest = export_artifact(kind, run_dir, out_dir, strategy=strategy, max_fpr=max_fpr,
                                   min_precision=min_precision, data_dir=data_dir,
                                   min_parity_pairs=min_parity_pairs, say=say)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # every failure is one line and exit status 1; nothing was installed
        raise click.ClickException(f"export of {run_dir} failed, {out_dir} left unchanged: {_one_line(exc)}") from None
    _summary(manifest, out_dir)


def _summary(manifest: dict, out_dir: str) -> None:
    cal = manifest["calibration"]
    click.echo(f"{manifest['model']} -> {out_dir}")
    click.echo(f"  calibration: a={cal['a']:.4g} b={cal['b']:.4g} z*={cal['z_star']:.4g} s={cal['s']:.4g} "
               f"T={cal['T']:g} k={cal['k']:g} ({cal['strategy']} {cal['target']:g})")
    click.echo(f"  parity: max |cost_onnx - cost_framework| = {manifest['parity']['max_abs_diff']:.2e} over "
               f"{manifest['parity']['pairs']} test pairs")
    click.echo(f"  {'split':12s} {'thresh':>6s} {'TPR':>7s} {'FPR':>8s} {'prec':>7s} {'false edges':>12s} {'ECE':>7s}")
    fmt = lambda v, spec: format(v, spec) if v is not None else "n/a"  # noqa: E731
    for split, report in manifest["metrics"]["cost"].items():
        for t, r in report["at"].items():
            click.echo(f"  {split:12s} {t:>6s} {fmt(r['tpr'], '7.4f'):>7s} {fmt(r['fpr'], '8.5f'):>8s} "
                       f"{fmt(r['precision'], '7.4f'):>7s} {r['expected_false_edges']:12d} "
                       f"{fmt(report['ece'], '7.4f'):>7s}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
