"""CI latency gate: is this change slower than its base? Measured on this machine, in this run, interleaved.

A fixed budget (microseconds, or a ratio to some reference workload) holds only on the machine that
measured it: another CPU has another mix of Python, numpy and onnxruntime speed. So the gate does
what `asv continuous` does. It measures the checkout (B, the working tree) and a base revision (A)
side by side:

  - the base is exported from git (`git archive` of its runtime/ and artifacts/) into a temp folder;
    default base: the merge base with the branch's upstream when that differs from HEAD, else HEAD~1
    (the last commit is the change); `--base REV` picks another;
  - two worker processes (benchmarks/gate_worker.py) import `runtime` from their own root, load
    their own artifacts, and score the same real candidate pairs with *this* harness, whatever the
    base's own benchmark code was;
  - the coordinator asks for one timed block at a time, A B | B A | A B ... per cost and metric
    (the order alternates so a drift favours neither side), every call timed on its own and the
    block's median kept, so a preemption inside a block moves nothing;
  - per round, the ratio B / A of the two adjacent blocks; load that comes and goes hits both.

A check (one cost, `single` = warm compute_cost of one pair, `batch32` = warm compute_costs of 32
candidates, per pair) FAILS only when B is slower than A consistently: the median of the per-round
ratios is above 1 + TOLERANCE *and* B was slower in enough rounds for a one-sided sign test at
p < SIGN_ALPHA (22 of the default 30 rounds). A 1.5x regression fails; noise and machine mix do not.
A failing check is measured once more (`confirm_failures`) and fails only if it fails again: a
regression is in both passes, a burst of load that happened to land on one side's blocks is not.

Where no base can be measured (no git, a shallow clone without HEAD~1, a base without runtime/ or
without that cost), the gate says so in one line and falls back, per cost, to a check that does
not depend on the machine's mix of speeds: the cost's ratio to a reference workload *of its own
kind* (pure Python/numpy arithmetic for Bhattacharyya, an onnxruntime call of a tiny graph for the
ONNX costs), against the committed ratio in benchmarks/budgets.json times FALLBACK_TOLERANCE.

A deliberate trade (a cost made slower for a better one) is declared where it is reviewed: in the
message of a commit between the base and HEAD, a trailer

    Latency-accepted: lr single 2.5, lr batch32 2.8

(cost, metric, the largest B/A ratio accepted; several per line or several lines). A check measured
at or below its accepted ratio passes and says which commit accepted it; above it, it fails as
before. Nothing else is exempt, and the ceiling still applies.

In every mode a warm median above the absolute ceiling (budgets.json `ceiling_us`, 1000 us per
pair: the "< 1 ms per pair" promise) fails: a generous sanity ceiling, never the pass/fail ratio.

    python benchmarks/gate.py                      # vs the default base; exit 1 on a regression
    python benchmarks/gate.py --base v1.2          # vs another revision
    python benchmarks/gate.py --no-base            # the same-kind fallback only
    python benchmarks/gate.py --update-budgets     # re-measure the fallback ratios
    git commit -m "..." -m "Latency-accepted: lr single 2.5"   # declare a deliberate trade
    STITCH_GATE_INJECT_US=mlp=+50% python benchmarks/gate.py            # prove it: B's mlp 1.5x slower
    STITCH_GATE_INJECT_US=both:bhattacharyya=+100% python benchmarks/gate.py  # slower kind on both: passes
"""
from __future__ import annotations

import datetime
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import click
import numpy as np
import onnxruntime as ort

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, REPO)

from benchmarks.gate_worker import (BATCH, METRICS, MODEL_KINDS, PARAM, REFERENCE_KIND, OnnxReference,  # noqa: E402
                                    PythonReference, ReferenceWorkload, Slowed, tiny_mlp_onnx)
from benchmarks.pairs import (TIME_WIN, candidate_groups, sample_pairs, scenario_fragments,  # noqa: E402
                              stitcher_queries)
from runtime.files import atomic_write_text  # noqa: E402

__all__ = ["TOLERANCE", "SIGN_ALPHA", "FALLBACK_TOLERANCE", "BUDGETS_PATH", "INJECT_ENV", "GateConfig", "GateResult",
           "Check", "Base", "resolve_base", "export_base", "load_costs", "gate_pairs", "measure", "evaluate",
           "run_gate", "confirm_failures", "pin_to_shared_cpu", "load_budgets", "parse_acceptances", "accepted_between", "ACCEPT_TRAILER", "parse_inject",
           "sign_test_threshold", "Slowed", "tiny_mlp_onnx",
           "ReferenceWorkload", "PythonReference", "OnnxReference", "PARAM", "BATCH", "METRICS"]

# B fails when its median per-round ratio to A exceeds 1 + TOLERANCE (and the sign test agrees).
# Unchanged code measures within a few per cent of 1 here, under a CPU hog too (docs/latency-gate.md);
# 1.2 sits well between that and the 1.5x regression the gate promises to catch.
TOLERANCE = 0.20
SIGN_ALPHA = 0.01
# The fallback (no base): a same-kind ratio may exceed its committed budget (the highest of 3 runs here)
# by this factor. Repeats on this shared box spread by up to 1.3x under load, and another CPU's
# same-kind ratios cannot be measured from here: the fallback is a coarse check that catches 2x.
FALLBACK_TOLERANCE = 2.0
DEFAULT_CEILING_US = 1000.0
BUDGETS_PATH = os.path.join(REPO, "benchmarks", "budgets.json")
BUDGETS_FORMAT = "i24-stitch-latency-budgets-v2"
DEFAULT_ARTIFACTS = os.path.join(REPO, "artifacts")
WORKER = os.path.join(REPO, "benchmarks", "gate_worker.py")
INJECT_ENV = "STITCH_GATE_INJECT_US"
COSTS = ("bhattacharyya", *MODEL_KINDS)


# ------------------------------------------------------------------------------------------------------
# In-process costs (for benchmarks/latency.py; the gate itself measures in worker processes).

def load_costs(artifacts_dir: str | None, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Bhattacharyya plus every `artifacts_dir/<kind>` that exists; a missing or unloadable one is a note."""
    from runtime.bhattacharyya import BhattacharyyaCostFunction
    from runtime.onnx_cost import ArtifactError, OnnxCostFunction

    costs: dict[str, Any] = {"bhattacharyya": BhattacharyyaCostFunction()}
    if artifacts_dir is None:
        return costs
    missing = []
    for kind in MODEL_KINDS:
        folder = os.path.join(artifacts_dir, kind)
        if not os.path.isdir(folder):
            missing.append(kind)
            continue
        try:
            costs[kind] = OnnxCostFunction(folder)
        except ArtifactError as exc:
            say(f"note: skipping {kind}: {exc}")
    if missing:
        say(f"note: no artifact for {', '.join(missing)} under {artifacts_dir}; gated: {', '.join(costs)}")
    return costs


def gate_pairs(preset: str = "ii", seed: int = 7, duration: float = 20.0, n_pairs: int = 256,
               n_groups: int = 16) -> tuple[list[tuple], list[tuple]]:
    """The gate's workload: (pairs for `single`, groups of 32 candidates for `batch32`) of one scenario."""
    queries = stitcher_queries(scenario_fragments(preset, seed, duration), TIME_WIN)
    return sample_pairs(queries, n_pairs, seed), candidate_groups(queries, BATCH, n_groups)


def _write_workload(path: str, pairs: Sequence[tuple], groups: Sequence[tuple]) -> None:
    """The workload as JSON for the workers: each fragment once, pairs and groups as indices."""
    index: dict[int, int] = {}
    frags: list = []

    def ix(doc) -> int:
        key = id(doc)
        if key not in index:
            index[key] = len(frags)
            frags.append(doc)
        return index[key]

    data = {"pairs": [[ix(a), ix(b)] for a, b in pairs], "groups": [[[ix(a) for a in c], ix(b)] for c, b in groups]}
    data["fragments"] = frags
    atomic_write_text(path, json.dumps(data))


# ------------------------------------------------------------------------------------------------------
# The base revision.

@dataclass
class Base:
    """Where the base comes from: a commit exported to `root`, or None with the reason it cannot be measured."""

    commit: str | None
    label: str
    root: str | None = None
    reason: str | None = None


def _git(*args: str, repo: str = REPO) -> str | None:
    try:
        done = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def resolve_base(rev: str | None = None, repo: str = REPO) -> Base:
    """The base commit: `rev` if given; else the merge base with the upstream if it differs from HEAD; else HEAD~1."""
    if _git("rev-parse", "--is-inside-work-tree", repo=repo) != "true":
        return Base(None, "none", reason=f"{repo} is not a git checkout (or git is missing)")
    if rev:
        commit = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", repo=repo)
        if commit is None:
            return Base(None, rev, reason=f"--base {rev}: no such commit here")
        return Base(commit, rev)
    head = _git("rev-parse", "HEAD", repo=repo)
    upstream = _git("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}", repo=repo)
    if upstream:
        merge_base = _git("merge-base", "HEAD", upstream, repo=repo)
        if merge_base and merge_base != head:
            return Base(merge_base, f"merge base with {upstream}")
    parent = _git("rev-parse", "--verify", "--quiet", "HEAD~1^{commit}", repo=repo)
    if parent is None:
        return Base(None, "HEAD~1", reason="HEAD~1 is not here (a shallow clone or the first commit)")
    return Base(parent, "HEAD~1")


ACCEPT_TRAILER = "Latency-accepted:"


def parse_acceptances(message: str) -> dict[tuple[str, str], float]:
    """{(cost, metric): largest accepted B/A ratio} from the `Latency-accepted:` trailers of one commit message.

    Raises ValueError naming the entry when one is not `<cost> <metric> <ratio>` with a known cost and
    metric and a ratio above 1.
    """
    out: dict[tuple[str, str], float] = {}
    for line in message.splitlines():
        if not line.strip().lower().startswith(ACCEPT_TRAILER.lower()):
            continue
        for entry in line.strip()[len(ACCEPT_TRAILER):].split(","):
            parts = entry.split()
            if not parts:
                continue
            try:
                cost, metric, ratio = parts[0].lower(), parts[1], float(parts[2].rstrip("x"))
            except (IndexError, ValueError):
                raise ValueError(f"{ACCEPT_TRAILER} entry {entry.strip()!r}: expected '<cost> <metric> <ratio>', "
                                 "e.g. 'lr single 2.5'") from None
            if len(parts) != 3 or cost not in COSTS or metric not in METRICS or not ratio > 1.0 \
                    or not math.isfinite(ratio):
                raise ValueError(f"{ACCEPT_TRAILER} entry {entry.strip()!r}: cost one of {', '.join(COSTS)}, "
                                 f"metric one of {', '.join(METRICS)}, ratio a number above 1")
            out[(cost, metric)] = max(ratio, out.get((cost, metric), 0.0))
    return out


def accepted_between(base_commit: str, repo: str = REPO) -> dict[tuple[str, str], tuple[float, str]]:
    """{(cost, metric): (ratio, short sha)} declared by the commits in base..HEAD (the largest ratio wins)."""
    log = _git("log", "--format=%h%x00%B%x1e", f"{base_commit}..HEAD", repo=repo)
    out: dict[tuple[str, str], tuple[float, str]] = {}
    for record in (log or "").split("\x1e"):
        if "\x00" not in record:
            continue
        sha, message = record.strip().split("\x00", 1)
        for key, ratio in parse_acceptances(message).items():
            if ratio > out.get(key, (0.0, ""))[0]:
                out[key] = (ratio, sha)
    return out


def export_base(base: Base, dest: str, repo: str = REPO) -> Base:
    """`git archive` of the base's runtime/ and artifacts/ into `dest`; the base gets `root` or a `reason`."""
    names = (_git("ls-tree", "--name-only", base.commit, "--", "runtime", "artifacts", repo=repo) or "").split()
    if "runtime" not in names:
        base.reason = f"{base.label} ({base.commit[:10]}) has no runtime/"
        return base
    try:
        done = subprocess.run(["git", "-C", repo, "archive", "--format=tar", base.commit, *names],
                              capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        base.reason = f"git archive failed: {exc}"
        return base
    if done.returncode != 0:
        base.reason = f"git archive {base.commit[:10]} failed: {done.stderr.decode(errors='replace').strip()[:200]}"
        return base
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(dest, filter="data")
    base.root = dest
    return base


# ------------------------------------------------------------------------------------------------------
# Injected slowdowns.

def parse_inject(text: str | None) -> dict[str, dict[str, dict[str, float]]]:
    """`STITCH_GATE_INJECT_US` -> {"a": {cost: spec}, "b": {cost: spec}}; spec {"us": x} or {"relative": r}.

    Entries, comma separated: `[SIDE:][NAME=]VALUE`. SIDE is `b` (the change, the default), `a` (the
    base) or `both`; NAME a cost (`*` or none: every cost); VALUE microseconds of busy-wait per pair
    (`50`) or a share of the cost's own time per pair (`+50%`, `50%`).

    Raises
    ------
    click.BadParameter
        A malformed entry, an unknown side or a negative delay.
    """
    out: dict[str, dict[str, dict[str, float]]] = {"a": {}, "b": {}}
    if not text or not text.strip():
        return out
    for item in text.split(","):
        entry = item.strip()
        side, colon, rest = entry.partition(":")
        if not colon:
            side, rest = "b", entry
        side = side.strip().lower()
        if side not in ("a", "b", "both"):
            raise click.BadParameter(f"{INJECT_ENV}: {entry!r}: side {side!r} is not a, b or both")
        name, sep, value = rest.strip().rpartition("=")
        key = name.strip().lower() if sep else "*"
        value = value.strip()
        try:
            if value.endswith("%"):
                spec = {"relative": float(value[:-1].lstrip("+")) / 100.0}
            else:
                spec = {"us": float(value)}
        except ValueError:
            raise click.BadParameter(f"{INJECT_ENV}: {entry!r} is not [SIDE:]NAME=MICROSECONDS or "
                                     "[SIDE:]NAME=+PERCENT%") from None
        amount = next(iter(spec.values()))
        if amount < 0 or not math.isfinite(amount) or (sep and not key):
            raise click.BadParameter(f"{INJECT_ENV}: {entry!r} needs a cost name and a delay >= 0")
        for s in (("a", "b") if side == "both" else (side,)):
            out[s][key] = spec
    return out


def _expand(inject: Mapping[str, Mapping[str, float]], costs: Sequence[str]) -> dict[str, dict[str, float]]:
    out = {}
    for name in costs:
        spec = inject.get(name, inject.get("*"))
        if spec and any(v > 0 for v in spec.values()):
            out[name] = dict(spec)
    return out


# ------------------------------------------------------------------------------------------------------
# Measuring.

@dataclass(frozen=True)
class GateConfig:
    """How much to measure: `rounds` rounds; per round, cost and metric one block per side of
    `block` single calls or `batch_block` batch calls of 32 candidates."""

    rounds: int = 30
    block: int = 64
    batch_block: int = 16
    confirm: bool = True  # re-measure the checks that fail; a check fails only when the confirmation fails too


def pin_to_shared_cpu(pid: int) -> int | None:
    """Pin process `pid` to the first CPU this process may run on; the CPU, or None where affinity is not
    available (not Linux) or refused.

    Both sides' workers go to the same CPU. They never run at once (the coordinator asks one block at a time),
    so sharing it costs nothing, and it removes a bias that alternation cannot: on a virtual machine the
    CPUs' speeds differ with the host's load, and a worker that stays on the slower one looks slower in
    every round. Measured here before pinning: the same code against itself at 1.4-1.6x in 15-16 of 16
    rounds, one side slower in one pass and the other in the next.
    """
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(pid, {cpu})
    except (AttributeError, OSError, ValueError):
        return None
    return cpu


class Worker:
    """A gate_worker.py process for one side; `block()` asks it to time one block."""

    def __init__(self, root: str, artifacts: str | None, workload: str, costs: Sequence[str],
                 inject: Mapping[str, Any], references: bool, log: str):
        env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        env.pop("PYTHONPATH", None)
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, env=env, cwd=root)
        self.cpu = pin_to_shared_cpu(self.proc.pid)
        self.hello = self._ask({"root": root, "artifacts": artifacts, "workload": workload, "costs": list(costs),
                                "inject": dict(inject), "references": references})
        if not self.hello.get("ok"):
            self.close()
            raise RuntimeError(f"gate worker for {root} failed: {self.hello.get('error')}")

    def _ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                tail = fh.read()[-600:]
            raise RuntimeError(f"gate worker exited (code {self.proc.returncode}): {tail.strip()}")
        return json.loads(line)

    def block(self, key: tuple[str, str], n: int, start: int) -> float:
        return float(self._ask({"block": list(key), "n": n, "start": start})["ns"])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _inject(b: "Worker", a: "Worker | None", inject: Mapping[str, Mapping[str, Mapping[str, float]]],
            config: "GateConfig", say: Callable[[str], None]) -> None:
    """Send the busy-waits to the workers. A relative one (+50%) is a share of the cost's own time per pair on
    this machine, measured first (unslowed, both sides alternating, median of 7 blocks each) and then the
    same microseconds go to every side that asked for it, so `both:` slows A and B alike."""
    own: dict[tuple[str, str], float] = {}
    sides = [w for w in (a, b) if w is not None]
    for side in ("a", "b"):
        for name, spec in inject.get(side, {}).items():
            if "relative" not in spec:
                continue
            for metric in METRICS:
                key = (name, metric)
                if key in own or list(key) not in b.hello["keys"]:
                    continue
                n = config.block if metric == "single" else config.batch_block
                have = [w for w in sides if list(key) in w.hello["keys"]]
                times = [w.block(key, n, k * n) for k in range(7) for w in (have if k % 2 else have[::-1])]
                own[key] = statistics.median(times) / 1e3
    for side, worker in (("a", a), ("b", b)):
        if worker is None:
            continue
        request = {}
        for name, spec in inject.get(side, {}).items():
            if "relative" in spec:
                single = spec["relative"] * own.get((name, "single"), 0.0)
                batch = spec["relative"] * own.get((name, "batch32"), 0.0)
            else:
                single = batch = spec["us"]
            request[name] = {"single_us": single, "batch_us": batch}
            say(f"note: {side.upper()}: injected {single:.2f} us per single pair, {batch:.2f} us per batch pair "
                f"into {name}" + (f" (+{spec['relative']:.0%} of its own time here)" if "relative" in spec else ""))
        if request:
            worker._ask({"inject": request})


def sign_test_threshold(n: int, alpha: float = SIGN_ALPHA) -> int:
    """The fewest rounds of n in which B must be slower for a one-sided sign test at p < alpha (n + 1 if none)."""
    tail = 0.0
    for k in range(n, -1, -1):
        tail += math.comb(n, k) / 2.0 ** n
        if tail > alpha:
            return k + 1
    return 0


def measure(b: Worker, a: Worker | None, compare: Sequence[tuple[str, str]], fallback: Sequence[tuple[str, str]],
            config: GateConfig, progress: Callable[[int], None] | None = None) -> dict:
    """Interleaved blocks. For `compare` keys A and B alternate (AB, then BA next round); for `fallback`
    keys B's cost block sits between two blocks of its same-kind reference.

    Returns {key: {"ratios": per round, "b_ns": per round, "a_ns": per round (compare only)}}.
    """
    keys = [(k, "compare") for k in compare] + [(k, "fallback") for k in fallback]
    out: dict[tuple[str, str], dict[str, list[float]]] = {k: {"ratios": [], "b_ns": [], "a_ns": []} for k, _ in keys}
    for r in range(config.rounds):
        shift = r % len(keys) if keys else 0
        for i, (key, mode) in enumerate(keys[shift:] + keys[:shift]):
            n = config.block if key[1] == "single" else config.batch_block
            start = r * n
            rec = out[key]
            if mode == "compare":
                if (r + i) % 2 == 0:
                    ta = a.block(key, n, start)
                    tb = b.block(key, n, start)
                else:
                    tb = b.block(key, n, start)
                    ta = a.block(key, n, start)
                rec["a_ns"].append(ta)
                rec["b_ns"].append(tb)
                rec["ratios"].append(tb / ta)
            else:
                ref = (f"ref:{REFERENCE_KIND[key[0]]}", "single")
                before = b.block(ref, config.block, 0)
                tb = b.block(key, n, start)
                after = b.block(ref, config.block, 0)
                rec["b_ns"].append(tb)
                rec["a_ns"].append(0.5 * (before + after))
                rec["ratios"].append(tb / (0.5 * (before + after)))
        if progress:
            progress(r + 1)
    return out


# ------------------------------------------------------------------------------------------------------
# Verdict.

@dataclass
class Check:
    """One gated number: a cost's metric, against its base (mode "base") or its same-kind reference ("fallback")."""

    cost: str
    metric: str
    mode: str
    ratio: float
    b_us: float
    a_us: float
    slower: int
    rounds: int
    limit: float | None
    failures: list[str] = field(default_factory=list)
    accepted: str | None = None  # "<= 2.5x, accepted in <sha>" when a commit's trailer allowed the slowdown

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict:
        return {"cost": self.cost, "metric": self.metric, "mode": self.mode, "ratio": round(self.ratio, 4),
                "b_us": round(self.b_us, 3), "a_us": round(self.a_us, 3), "slower": self.slower,
                "rounds": self.rounds, "limit": self.limit, "ok": self.ok, "failures": self.failures,
                "accepted": self.accepted}


@dataclass
class GateResult:
    checks: list[Check]
    base: str
    notes: list[str]
    wall_s: float = 0.0
    runtimes: dict[str, str] = field(default_factory=dict)  # side ("A", "B") -> the runtime/__init__.py it imported

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    def report(self) -> str:
        need = sign_test_threshold(self.checks[0].rounds) if self.checks else 0
        lines = [f"latency gate: change (working tree) vs base {self.base}; a check fails when B/A > "
                 f"{1 + TOLERANCE:g} (median over rounds) and B was slower in >= {need} rounds (sign test, "
                 f"p < {SIGN_ALPHA:g})",
                 f"{'cost':<14} {'metric':<8} {'mode':<8} {'A us':>9} {'B us':>9} {'ratio':>7} {'slower':>7}  verdict"]
        for c in self.checks:
            a_us = f"{c.a_us:9.2f}" if c.mode == "base" else f"{'ref ' + format(c.a_us, '.1f'):>9}"
            verdict = ("ok" + (f" (slower, {c.accepted})" if c.accepted else "")) if c.ok else \
                "FAIL: " + "; ".join(c.failures)
            slower = f"{c.slower:>3}/{c.rounds:<3}" if c.mode == "base" else f"{'-':^7}"
            lines.append(f"{c.cost:<14} {c.metric:<8} {c.mode:<8} {a_us} {c.b_us:9.2f} {c.ratio:7.3f} {slower}  "
                         f"{verdict}")
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"latency gate: " + ("passed" if self.passed else
                                          f"FAILED ({sum(not c.ok for c in self.checks)} check(s))")
                     + f" in {self.wall_s:.1f} s")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"passed": self.passed, "base": self.base, "wall_s": round(self.wall_s, 2), "notes": self.notes,
                "runtimes": self.runtimes, "checks": [c.to_json() for c in self.checks]}


def load_budgets(path: str = BUDGETS_PATH) -> dict:
    """{"ceiling_us": {metric: us}, "fallback": {cost: {metric: ratio}}} from budgets.json.

    Raises
    ------
    ValueError
        The file is not a budgets file of this format, or a value is not a positive number.
    """
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or data.get("format") != BUDGETS_FORMAT or not isinstance(data.get("fallback"), dict):
        raise ValueError(f"{path}: not a {BUDGETS_FORMAT!r} file with a 'fallback' object")

    def positive(where: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
            raise ValueError(f"{path}: {where} must be a positive number, got {value!r}")
        return float(value)

    ceiling = data.get("ceiling_us", {})
    if not isinstance(ceiling, dict):
        raise ValueError(f"{path}: ceiling_us must map metric names to microseconds")
    out: dict = {"ceiling_us": {m: DEFAULT_CEILING_US for m in METRICS}, "fallback": {}}
    for metric, value in ceiling.items():
        if metric not in METRICS:
            raise ValueError(f"{path}: ceiling_us.{metric}: unknown metric (known: {', '.join(METRICS)})")
        out["ceiling_us"][metric] = positive(f"ceiling_us.{metric}", value)
    for cost, metrics in data["fallback"].items():
        if not isinstance(metrics, dict):
            raise ValueError(f"{path}: fallback.{cost} must map metric names to ratios")
        for metric, value in metrics.items():
            if metric not in METRICS:
                raise ValueError(f"{path}: fallback.{cost}.{metric}: unknown metric (known: {', '.join(METRICS)})")
            out["fallback"].setdefault(cost, {})[metric] = positive(f"fallback.{cost}.{metric}", value)
    return out


def evaluate(measured: Mapping[tuple[str, str], Mapping[str, list]], modes: Mapping[tuple[str, str], str],
             budgets: Mapping[str, Any], base_label: str = "-",
             accepted: Mapping[tuple[str, str], tuple[float, str]] | None = None) -> GateResult:
    """The verdict on `measure`'s output (see the module docstring). `accepted`: `accepted_between`'s
    declared trades, which lift a base-mode check's limit to the declared ratio."""
    accepted = accepted or {}
    checks, notes = [], []
    for (cost, metric), rec in measured.items():
        mode = modes[(cost, metric)]
        ratios = rec["ratios"]
        n = len(ratios)
        ratio = statistics.median(ratios)
        b_us = statistics.median(rec["b_ns"]) / 1e3
        a_us = statistics.median(rec["a_ns"]) / 1e3
        slower = sum(r > 1.0 for r in ratios)
        if mode == "base":
            limit = 1.0 + TOLERANCE
            check = Check(cost, metric, "base", ratio, b_us, a_us, slower, n, limit)
            need = sign_test_threshold(n)
            declared = accepted.get((cost, metric))
            if ratio > limit and slower >= need and declared is not None and ratio <= declared[0]:
                check.accepted = f"{ratio:.2f}x <= {declared[0]:g}x accepted in {declared[1]}"
            elif ratio > limit and slower >= need:
                extra = f"; {declared[1]} accepted up to {declared[0]:g}x" if declared else ""
                check.failures.append(f"{ratio:.2f}x its base (> {limit:g}x), slower in {slower}/{n} rounds{extra}")
            elif ratio > limit:
                notes.append(f"{cost} {metric}: median ratio {ratio:.2f} but slower in only {slower}/{n} rounds "
                             f"(< {need}): noise, not a consistent regression")
        else:
            budget = budgets["fallback"].get(cost, {}).get(metric)
            limit = None if budget is None else budget * FALLBACK_TOLERANCE
            check = Check(cost, metric, "fallback", ratio, b_us, a_us, slower, n, limit)
            if limit is None:
                notes.append(f"no fallback budget for {cost} {metric}: ceiling only (run --update-budgets)")
            elif ratio > limit:
                check.failures.append(f"same-kind ratio {ratio:.3f} > {limit:.3f} (budget {budget:.3f} x "
                                      f"{FALLBACK_TOLERANCE:g})")
        ceiling = budgets["ceiling_us"].get(metric, DEFAULT_CEILING_US)
        if b_us > ceiling:
            check.failures.append(f"{b_us:.0f} us per pair > ceiling {ceiling:g} us")
        checks.append(check)
    return GateResult(checks, base_label, notes)


def confirm_failures(result: GateResult, remeasure: Callable[[list], dict], modes: Mapping[tuple[str, str], str],
                     budgets: Mapping[str, Any], accepted: Mapping | None = None) -> GateResult:
    """Measure the failing checks of `result` once more (`remeasure(keys)` -> `measure`'s output for those keys)
    and keep a failure only when the confirmation fails as well.

    A real regression is there in both passes; a burst of load that lands on one side's blocks for most of
    a pass (seen once in hundreds of runs on a shared machine) is not. A check that passes its confirmation
    is reported with the confirmation's figures and a note naming the first pass's.
    """
    failing = [(c.cost, c.metric) for c in result.checks if not c.ok]
    if not failing:
        return result
    second = evaluate(remeasure(failing), {k: modes[k] for k in failing}, budgets, result.base, accepted)
    again = {(c.cost, c.metric): c for c in second.checks}
    checks = []
    for c in result.checks:
        c2 = again.get((c.cost, c.metric))
        if c2 is None:
            checks.append(c)
        elif c2.ok:
            result.notes.append(f"{c.cost} {c.metric}: failed the first pass ({'; '.join(c.failures)}), passed "
                                f"its confirmation ({c2.ratio:.2f}x, slower in {c2.slower}/{c2.rounds}): noise")
            checks.append(c2)
        else:
            result.notes.append(f"{c.cost} {c.metric}: confirmed by a second pass ({c2.ratio:.2f}x, slower in "
                                f"{c2.slower}/{c2.rounds})")
            checks.append(c)
    result.checks = checks
    result.notes.extend(n for n in second.notes if n not in result.notes)
    return result


def _workload_file(tmp: str, workload: tuple[list, list] | None) -> tuple[str, int, int]:
    pairs, groups = workload if workload is not None else gate_pairs()
    path = os.path.join(tmp, "workload.json")
    _write_workload(path, pairs, groups)
    return path, len(pairs), len(groups)


def run_gate(base: str | None = None, *, use_base: bool = True, base_root: str | None = None,
             change_root: str = REPO, artifacts_dir: str | None = None, budgets_path: str = BUDGETS_PATH,
             inject: Mapping[str, Mapping[str, Any]] | None = None, costs: Sequence[str] | None = None,
             config: GateConfig | None = None, workload: tuple[list, list] | None = None,
             say: Callable[[str], None] = print, progress: bool = False) -> GateResult:
    """Measure the change against its base (or the fallback) and judge.

    Parameters
    ----------
    base : a git revision for the base; None: the default (see `resolve_base`).
    use_base : False: skip the base, fallback check only (`--no-base`).
    base_root : a folder with runtime/ (and artifacts/) to use as the base instead of a git revision.
    change_root : the change's root (default: this working tree); its artifacts are `artifacts_dir`
        (default `change_root/artifacts`).
    inject : `parse_inject`'s output: busy-waits per side.
    costs : which costs to gate (default all: Bhattacharyya and every shipped artifact).
    workload : (pairs, groups) to use instead of `gate_pairs()`.
    """
    started = time.perf_counter()
    budgets = load_budgets(budgets_path)  # before measuring: a bad budgets file fails fast
    config = config or GateConfig()
    inject = inject or {"a": {}, "b": {}}
    wanted = [c.lower() for c in (costs or COSTS)]
    unknown = sorted(set(wanted) - set(COSTS))
    if unknown:
        raise ValueError(f"unknown cost(s) {', '.join(unknown)}; known: {', '.join(COSTS)}")
    artifacts_dir = artifacts_dir or os.path.join(change_root, "artifacts")
    with tempfile.TemporaryDirectory(prefix="stitch-gate-") as tmp:
        if base_root is not None:
            where = Base(None, f"folder {base_root}", root=base_root)
        elif use_base:
            where = resolve_base(base)
            if where.commit is not None:
                export_base(where, os.path.join(tmp, "base"))
        else:
            where = Base(None, "none", reason="--no-base")
        label = where.label + (f" ({where.commit[:10]})" if where.commit else "")
        if where.root is None:
            say(f"note: no base measured ({where.reason}); fallback: each cost against a same-kind reference "
                f"workload, budgets x {FALLBACK_TOLERANCE:g}")
            label = "none (fallback)"
        path, n_pairs, n_groups = _workload_file(tmp, workload)
        workers: list[Worker] = []
        try:
            b = Worker(change_root, artifacts_dir, path, wanted, {}, True, os.path.join(tmp, "b.log"))
            workers.append(b)
            a = None
            if where.root is not None:
                try:
                    a = Worker(where.root, os.path.join(where.root, "artifacts"), path, wanted, {}, False,
                               os.path.join(tmp, "a.log"))
                    workers.append(a)
                except RuntimeError as exc:  # e.g. a base whose runtime does not import here
                    say(f"note: no base measured ({label}: {str(exc)[:300]}); fallback: each cost against a "
                        f"same-kind reference workload, budgets x {FALLBACK_TOLERANCE:g}")
                    label = "none (fallback)"
            for side, w in (("B", b), ("A", a)):
                if w is not None:
                    for note in w.hello["notes"]:
                        say(f"note: {side}: {note}")
            b_keys = [tuple(k) for k in b.hello["keys"] if not k[0].startswith("ref:")]
            a_keys = set() if a is None else {tuple(k) for k in a.hello["keys"]}
            compare = [k for k in b_keys if k in a_keys]
            fallback = [k for k in b_keys if k not in a_keys]
            if a is not None:
                missing = sorted({k[0] for k in fallback})
                if missing:
                    say(f"note: the base lacks {', '.join(missing)}: fallback check for "
                        f"{'it' if len(missing) == 1 else 'them'}")
                gone = sorted({k[0] for k in a_keys} - {k[0] for k in b_keys})
                if gone:
                    say(f"note: the change no longer has {', '.join(gone)} (measured in the base only; not gated)")
            runtimes = {side: w.hello["runtime"] for side, w in (("A", a), ("B", b)) if w is not None}
            _inject(b, a, {s: _expand(inject.get(s, {}), wanted) for s in ("a", "b")}, config, say)
            bar = None
            if progress:
                from tqdm import tqdm
                bar = tqdm(total=config.rounds, desc="latency gate rounds", unit="round", leave=False,
                           file=sys.stderr)
            measured = measure(b, a, compare, fallback, config, (lambda r: bar.update(1)) if bar else None)
            if bar:
                bar.close()
            modes = {**{k: "base" for k in compare}, **{k: "fallback" for k in fallback}}
            declared = accepted_between(where.commit, repo=change_root) if where.commit and compare else {}
            result = evaluate(measured, modes, budgets, label, declared)
            if config.confirm:
                result = confirm_failures(result, lambda keys: measure(
                    b, a, [k for k in compare if k in keys], [k for k in fallback if k in keys], config),
                    modes, budgets, declared)
        finally:
            for w in workers:
                w.close()
    result.notes[:0] = [f"{n_pairs} pairs, {n_groups} groups of {BATCH}; {config.rounds} rounds; "
                        f"blocks of {config.block} single / {config.batch_block} batch calls per side"]
    result.wall_s = time.perf_counter() - started
    result.runtimes = runtimes
    return result


# ------------------------------------------------------------------------------------------------------
# Command line.

def _update_budgets(path: str, artifacts_dir: str | None, config: GateConfig, repeats: int) -> str:
    """Measure the fallback ratios `repeats` times and write, per cost and metric, the highest."""
    runs = [run_gate(use_base=False, artifacts_dir=artifacts_dir, budgets_path=path, config=config,
                     say=lambda _: None) for _ in range(repeats)]
    fallback: dict[str, dict[str, float]] = {}
    spread: dict[str, dict[str, float]] = {}
    for check in runs[0].checks:
        values = [c.ratio for run in runs for c in run.checks if (c.cost, c.metric) == (check.cost, check.metric)]
        fallback.setdefault(check.cost, {})[check.metric] = round(max(values), 4)
        spread.setdefault(check.cost, {})[check.metric] = round(max(values) / min(values), 3)
    with open(path, encoding="utf-8") as fh:
        ceiling = json.load(fh).get("ceiling_us", {m: DEFAULT_CEILING_US for m in METRICS})
    data = {
        "format": BUDGETS_FORMAT,
        "about": ("Not the gate's pass/fail rule: the gate compares the change with its base on the same machine. "
                  "ceiling_us: a generous absolute sanity ceiling per pair (warm median), checked in every mode. "
                  "fallback: used only when no base can be measured; each cost's warm median over a reference "
                  "workload of its own kind (bhattacharyya: pure Python/numpy arithmetic; ONNX costs: an "
                  "onnxruntime call of a tiny graph), failing above budget x FALLBACK_TOLERANCE."),
        "ceiling_us": ceiling,
        "fallback": fallback,
        "reference_kind": {c: REFERENCE_KIND[c] for c in fallback},
        "measured": {
            "how": (f"python benchmarks/gate.py --update-budgets --repeats {repeats} --rounds {config.rounds}: "
                    "per cost and metric the highest of the repeats' same-kind ratios"),
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
            "python": platform.python_version(), "numpy": np.__version__, "onnxruntime": ort.__version__,
            "max_over_min_of_repeats": spread,
        },
    }
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return json.dumps(fallback, indent=2)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--base", "base", default=None, metavar="REV",
              help="The base revision to compare with. Default: the merge base with the branch's upstream when "
                   "it differs from HEAD, else HEAD~1.")
@click.option("--no-base", is_flag=True, help="Skip the base: the same-kind fallback check only.")
@click.option("--base-root", type=click.Path(file_okay=False, exists=True), default=None,
              help="A folder with runtime/ and artifacts/ to use as the base instead of a git revision.")
@click.option("--change-root", type=click.Path(file_okay=False, exists=True), default=REPO, show_default=True,
              help="The change's root (default: this working tree, uncommitted edits included).")
@click.option("--artifacts", default=None, type=click.Path(file_okay=False),
              help="The change's artifact folder (default: CHANGE_ROOT/artifacts); the base uses its own.")
@click.option("--budgets", "budgets_path", default=BUDGETS_PATH, show_default=True, type=click.Path(dir_okay=False),
              help="The ceiling and the fallback's same-kind ratios.")
@click.option("--only", "only", multiple=True, type=click.Choice(COSTS, case_sensitive=False),
              help="Gate only this cost (repeatable).")
@click.option("--rounds", default=GateConfig.rounds, show_default=True, type=click.IntRange(min=3),
              help="Interleaved rounds; each times one block per side, cost and metric.")
@click.option("--confirm/--no-confirm", default=True, show_default=True,
              help="Measure a failing check once more and fail it only if it fails again.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
              help="Also write the verdict and every figure as JSON here.")
@click.option("--update-budgets", is_flag=True,
              help="Measure the fallback's same-kind ratios (--repeats times) and write the budgets file.")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1),
              help="With --update-budgets: independent measurements; the budget is the highest ratio.")
def main(base, no_base, base_root, change_root, artifacts, budgets_path, only, rounds, confirm, json_path,
         update_budgets, repeats):
    """Fail (exit 1) when this change makes a stitch cost slower than its base revision.

    The checkout (B: the working tree) and the base (A: by default the merge base with the upstream
    when it differs from HEAD, else HEAD~1; or --base REV) are measured on this machine in this run:
    the base's runtime/ and artifacts/ are exported with `git archive` to a temp folder, each side
    runs in its own worker process with this harness, and timed blocks alternate A B | B A | ...
    per cost and metric. A check fails when the median per-round B/A ratio exceeds 1.2 and B was
    slower in enough rounds for a sign test (p < 0.01; 22 of the default 30). Where no base can be measured the
    gate says so and checks each cost against a reference workload of its own kind instead
    (budgets.json). A warm median above 1000 us per pair fails in every mode.

    STITCH_GATE_INJECT_US adds a busy-wait per pair to prove the gate: "mlp=+50%" (the change's mlp
    1.5x slower), "both:bhattacharyya=+100%" (both sides), "a:lr=20" (20 us in the base only).
    """
    config = GateConfig(rounds=rounds, confirm=confirm)
    if update_budgets:
        click.echo(_update_budgets(budgets_path, artifacts, config, repeats))
        click.echo(f"wrote {budgets_path}")
        return
    try:
        result = run_gate(base, use_base=not no_base, base_root=base_root, change_root=change_root,
                          artifacts_dir=artifacts, budgets_path=budgets_path,
                          inject=parse_inject(os.environ.get(INJECT_ENV)), costs=list(only) or None,
                          config=config, say=click.echo, progress=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result.report())
    if json_path:
        atomic_write_text(json_path, json.dumps(result.to_json(), indent=2) + "\n")
    if not result.passed:
        sys.exit(1)


if __name__ == "__main__":
    main()
