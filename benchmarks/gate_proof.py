"""Proof of the latency gate (benchmarks/gate.py): no false alarm, and a 1.5x regression caught.

Three series of full gate runs (every cost, the default configuration), each run a separate
`python benchmarks/gate.py` process, base and change being two `git archive` copies of the same
commit (runtime/ and artifacts/), so the code under test is unchanged and only the machine varies:

  - hog:          no injection, while two CPU hogs load both cores (one pure-Python spin loop, one
                  single-threaded numpy 1000x1000 matmul loop: one core's worth of interpreter work,
                  one of cache- and memory-hungry work);                            expected: all pass
  - slowed_both:  one kind of work made 2x slower in both A and B (a machine with another mix of
                  speeds): alternately Bhattacharyya (Python/numpy) and the five ONNX costs
                  (`both:NAME=+100%`);                                              expected: all pass
  - detect:       +50% injected into one cost in B only (`b:NAME=+50%`), the cost cycling through
                  all six;                                          expected: >= 19 of 20 caught

Writes benchmarks/results/gate_proof.json and .md (rewritten after every run, so a partial proof
is kept) and gate_proof.png (every check's ratio per series).

    python benchmarks/gate_proof.py                 # 3 x 20 runs
    python benchmarks/gate_proof.py --runs 3        # a quick look
"""
from __future__ import annotations

import datetime
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time

import click

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.gate import COSTS, INJECT_ENV, TOLERANCE, sign_test_threshold, GateConfig  # noqa: E402
from runtime.files import atomic_write_text  # noqa: E402

RESULTS = os.path.join(REPO, "benchmarks", "results")
ONNX_COSTS = [c for c in COSTS if c != "bhattacharyya"]

HOG_PYTHON = "while True: pass"
HOG_NUMPY = ("import numpy as np\n"
             "a = np.random.default_rng(0).random((1000, 1000))\n"
             "while True: a @ a")


def _export(commit: str, dest: str) -> None:
    data = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", commit, "runtime", "artifacts"],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")


def _series() -> dict[str, list[tuple[str, str | None]]]:
    """name -> [(injection, the cost expected to fail or None)] for 20 runs."""
    both = [f"both:bhattacharyya=+100%" if i % 2 == 0 else ",".join(f"both:{c}=+100%" for c in ONNX_COSTS)
            for i in range(20)]
    return {"hog": [("", None)] * 20,
            "slowed_both": [(x, None) for x in both],
            "detect": [(f"b:{COSTS[i % len(COSTS)]}=+50%", COSTS[i % len(COSTS)]) for i in range(20)]}


def _markdown(data: dict) -> str:
    lines = ["# Latency gate proof", "",
             f"{data['date']}, {data['machine']}; commit {data['commit'][:10]} as both base and change "
             f"(two `git archive` copies); every run a full `python benchmarks/gate.py` (all six costs, "
             f"{data['config']['rounds']} rounds); a check fails at a median B/A > {1 + TOLERANCE:g} with B "
             f"slower in >= {sign_test_threshold(data['config']['rounds'])} of {data['config']['rounds']} rounds.",
             "", "| series | what | runs | gate failed | expected | max ratio of a check that should pass | "
                 "median wall s |", "|---|---|---:|---:|---|---:|---:|"]
    what = {"hog": "unchanged; two CPU hogs (Python spin + numpy matmul) load both cores",
            "slowed_both": "one kind of work 2x slower in A and B (Bhattacharyya / the 5 ONNX costs, alternating)",
            "detect": "+50% into one cost in B only (cycling through the 6)"}
    for name, s in data["series"].items():
        runs = s["runs"]
        if not runs:
            continue
        failed = sum(not r["passed"] for r in runs)
        walls = sorted(r["wall_s"] for r in runs)
        clean = [c["ratio"] for r in runs for c in r["checks"] if c["cost"] != r.get("expect")]
        expected = "all caught" if name == "detect" else "0 failures"
        lines.append(f"| {name} | {what[name]} | {len(runs)} | {failed} | {expected} | "
                     f"{max(clean):.3f} | {walls[len(walls) // 2]:.1f} |")
    det = data["series"].get("detect", {}).get("runs", [])
    if det:
        caught = sum(r["caught"] for r in det)
        lines += ["", f"detect: {caught} of {len(det)} runs caught the slowed cost; "
                      f"{sum(r['false_checks'] for r in det)} check(s) of other costs failed.", "",
                  "| run | slowed | single ratio | batch32 ratio | caught |", "|---:|---|---:|---:|---|"]
        for i, r in enumerate(det):
            ratios = {c["metric"]: c["ratio"] for c in r["checks"] if c["cost"] == r["expect"]}
            lines.append(f"| {i + 1} | {r['expect']} | {ratios.get('single', float('nan')):.3f} | "
                         f"{ratios.get('batch32', float('nan')):.3f} | {'yes' if r['caught'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def plot(data: dict, path: str) -> None:
    """gate_proof.png: every check's B/A ratio per series (slowed costs in red), with the 1.2 line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4.2))
    rng = np.random.default_rng(0)
    names = list(data["series"])
    for i, name in enumerate(names):
        for r in data["series"][name]["runs"]:
            for c in r["checks"]:
                slowed = c["cost"] == r.get("expect")
                ax.scatter(i + rng.uniform(-0.3, 0.3), c["ratio"], s=7, alpha=0.55,
                           color="tab:red" if slowed else "tab:blue", marker="x" if slowed else "o")
    ax.axhline(1 + TOLERANCE, color="black", lw=1, ls="--")
    ax.text(len(names) - 0.5, 1 + TOLERANCE + 0.01, f"fails above {1 + TOLERANCE:g}", ha="right", va="bottom")
    ax.set_xticks(range(len(names)), [f"{n}\n({len(data['series'][n]['runs'])} runs)" for n in names])
    ax.set_ylabel("median per-round ratio B / A")
    ax.set_title("Latency gate proof: blue = checks that must pass, red x = the cost slowed +50% in B")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


@click.command()
@click.option("--runs", default=20, show_default=True, type=click.IntRange(1, 20), help="Runs per series.")
@click.option("--series", "only", multiple=True, type=click.Choice(["hog", "slowed_both", "detect"]),
              help="Run only these series (repeatable).")
@click.option("--out", default=RESULTS, show_default=True, type=click.Path(file_okay=False))
@click.option("--plot-only", is_flag=True, help="Redraw gate_proof.png from the existing gate_proof.json.")
def main(runs, only, out, plot_only):
    """Run the gate's false-alarm and detection series and write gate_proof.json / .md / .png."""
    from tqdm import tqdm

    if plot_only:
        with open(os.path.join(out, "gate_proof.json"), encoding="utf-8") as fh:
            plot(json.load(fh), os.path.join(out, "gate_proof.png"))
        click.echo(f"wrote {os.path.join(out, 'gate_proof.png')}")
        return

    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    os.makedirs(out, exist_ok=True)
    data = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "commit": commit,
            "python": platform.python_version(), "config": {"rounds": GateConfig.rounds, "block": GateConfig.block,
                                                          "batch_block": GateConfig.batch_block},
            "series": {}}
    with tempfile.TemporaryDirectory(prefix="gate-proof-") as tmp:
        a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        _export(commit, a)
        _export(commit, b)
        for name, plan in _series().items():
            if only and name not in only:
                continue
            series = data["series"].setdefault(name, {"runs": []})
            hogs = []
            if name == "hog":
                env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
                hogs = [subprocess.Popen([sys.executable, "-c", code], env=env) for code in (HOG_PYTHON, HOG_NUMPY)]
                time.sleep(1.0)
            try:
                for injection, expect in tqdm(plan[:runs], desc=name, unit="run"):
                    result_path = os.path.join(tmp, "result.json")
                    env = dict(os.environ, **{INJECT_ENV: injection})
                    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "gate.py"),
                                           "--base-root", a, "--change-root", b, "--json", result_path],
                                          capture_output=True, text=True, env=env)
                    if not os.path.exists(result_path):
                        raise click.ClickException(f"gate run failed (exit {done.returncode}): "
                                                   f"{done.stderr.strip()[-400:]}")
                    with open(result_path, encoding="utf-8") as fh:
                        result = json.load(fh)
                    os.unlink(result_path)
                    failing = {c["cost"] for c in result["checks"] if not c["ok"]}
                    result.update(injection=injection, expect=expect, exit_code=done.returncode,
                                  caught=bool(expect and expect in failing),
                                  false_checks=sum(1 for c in result["checks"] if not c["ok"] and c["cost"] != expect),
                                  load_average=os.getloadavg()[0])
                    series["runs"].append(result)
                    atomic_write_text(os.path.join(out, "gate_proof.json"), json.dumps(data, indent=1) + "\n")
                    atomic_write_text(os.path.join(out, "gate_proof.md"), _markdown(data))
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
    plot(data, os.path.join(out, "gate_proof.png"))
    click.echo(_markdown(data))


if __name__ == "__main__":
    main()
