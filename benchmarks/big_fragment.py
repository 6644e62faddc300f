"""A 10^6-sample fragment through both kinds of cost and pp_lite: wall time and peak memory (figures, not a test).

tests/test_reliability.py checks the machine-independent side (results, and what the costs allocate as
a multiple of the input, counted by tracemalloc); the seconds and the peak RSS it used to assert live
here. Runs in a fresh process per measurement so the peak (VmHWM) belongs to this work alone.

    python benchmarks/big_fragment.py                       # Bhattacharyya + artifacts/lr
    python benchmarks/big_fragment.py --artifact artifacts/mlp --samples 250000
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import click
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from runtime.files import atomic_write_text  # noqa: E402

HZ = 25.0
TIME_WIN = 15.0


def _vm(field: str) -> float:
    """A /proc/self/status figure in MB (NaN where there is no /proc)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _doc(fid: str, t0: float, n: int, x0: float = 500.0, speed: float = 60.0) -> dict:
    t = (round(t0 * HZ) + np.arange(n)) / HZ
    return {"_id": fid, "timestamp": t.tolist(), "x_position": (x0 + speed * (t - t[0])).tolist(),
            "y_position": (18.0 + 0.05 * np.sin(t)).tolist(), "direction": 1, "velocity": [float(speed)] * n,
            "detection_confidence": [0.9] * n, "length": 15.0, "width": 6.0, "height": 5.0}


def _child(artifact: str, samples: int) -> dict:
    import pp_lite
    from runtime.bhattacharyya import BhattacharyyaCostFunction
    from runtime.onnx_cost import OnnxCostFunction

    start_mb = _vm("VmRSS")
    big = _doc("long-one", 1000.0, samples, speed=0.01)
    t_end = big["timestamp"][-1]
    before = _doc("before", 990.0, 30, x0=0.0)
    after = _doc("after", t_end + 1.0, 30, x0=big["x_position"][-1] + 0.01, speed=0.01)
    input_mb = _vm("VmRSS")
    out = {"samples": samples, "start_mb": start_mb, "input_mb": input_mb, "seconds": {}}
    for name, fn in (("bhattacharyya", BhattacharyyaCostFunction()), ("onnx", OnnxCostFunction(artifact))):
        t0 = time.perf_counter()
        fn.compute_cost(big, after, TIME_WIN)
        fn.compute_costs([before, big], after, TIME_WIN)
        out["seconds"][name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    params = pp_lite.load_parameters(os.path.join(REPO, "parameters_Bhat.json"))
    pp_lite.run([before, big, after], params)
    out["seconds"]["pp_lite"] = time.perf_counter() - t0
    out["peak_mb"] = _vm("VmHWM")
    out["added_over_input"] = (out["peak_mb"] - input_mb) / max(input_mb - start_mb, 1e-9)
    return out


@click.command()
@click.option("--artifact", default=os.path.join(REPO, "artifacts", "lr"), show_default=True,
              type=click.Path(file_okay=False, exists=True))
@click.option("--samples", default=10 ** 6, show_default=True, type=click.IntRange(min=100))
@click.option("--out", default=os.path.join(REPO, "benchmarks", "results", "big_fragment.json"), show_default=True,
              type=click.Path(dir_okay=False))
@click.option("--child", is_flag=True, hidden=True)
def main(artifact, samples, out, child):
    """Time a 10^6-sample fragment through Bhattacharyya, one artifact and pp_lite, and record the peak RSS."""
    if child:
        click.echo(json.dumps(_child(artifact, samples)))
        return
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--artifact", artifact,
                           "--samples", str(samples)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise click.ClickException(done.stderr.strip()[-800:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    os.makedirs(os.path.dirname(out), exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    click.echo(json.dumps(result, indent=2))
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
