"""Torch encoder latency: one junction window (batch 1) through each sequence model's encoder, eval mode.

Issue target: under 1 ms per window in torch on this machine (it bounds what the ONNX encoder costs a
new fragment). Windows are real: the tail windows of scenario ii fragments (`training.simulate`, seed 7),
built with `runtime.windows.fragment_windows` as training and the runtime build them. The encoders are
the trained ones of `--runs` (`runs/<kind>`), or the default architecture with random weights when a run
is missing (the same cost: latency does not depend on the weight values).

Every call is timed with `perf_counter_ns` under `torch.inference_mode()` after a warm-up; medians and
p90 over all calls, eager with one and with two intra-op threads, and TorchScript (`torch.jit.trace`,
`freeze`, `optimize_for_inference`; one thread; its outputs checked equal to eager's on every window),
with the ONNX encoder of `--artifacts` (onnxruntime, one thread, the runtime's own session) beside them. Results go to
`benchmarks/results/encoders.json` and `.md`.

    python benchmarks/encoders.py [--runs runs] [--artifacts artifacts] [--windows 300]
"""
from __future__ import annotations

import json
import os
import sys
import time

import click
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from runtime.files import atomic_write_text  # noqa: E402

KINDS = ("siamese", "tcn", "transformer")
NAMES = {"siamese": "Siamese BiLSTM", "tcn": "TCN", "transformer": "Transformer"}


def _windows(count: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    from runtime.feed import prepare_fragments
    from runtime.fragment import Fragment
    from runtime.windows import TAIL, fragment_windows
    from training.simulate import simulate

    _, raw = simulate("ii", 7)
    docs, _ = prepare_fragments(raw)
    docs = docs[:count]
    pairs = [fragment_windows(Fragment.from_document(d), length) for d in docs]
    return (np.stack([w[TAIL] for w, _ in pairs]).astype(np.float32),
            np.stack([m[TAIL] for _, m in pairs]).astype(np.float32))


def _encoder(kind: str, runs_dir: str):
    import torch

    from training.models import model_module
    from training.train import load_trained

    run = os.path.join(runs_dir, kind)
    if os.path.exists(os.path.join(run, "best.pt")):
        _, model, _ = load_trained(run)
        source = run
    else:
        module = model_module(kind)
        torch.manual_seed(0)
        stats = {"channel_mean": [0.0] * 8, "channel_std": [1.0] * 8,
                 "feature_mean": [0.0] * 47, "feature_scale": [1.0] * 47}
        model = module.build(module.Config(), stats)
        source = "default config, random weights"
    return model.encoder.eval(), source


def _scripted(encoder, items):
    """The encoder traced, frozen and optimised for inference; refuses one whose output differs from eager's."""
    import warnings

    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about Python values; the check below is what counts
        traced = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(encoder, items[0]).eval()))
        worst = max(float((traced(*wm) - encoder(*wm)).abs().max()) for wm in items)
    if worst > 1e-4:
        raise RuntimeError(f"TorchScript encoder differs from eager by {worst:.2e}")
    return traced


def _time(call, items, rounds: int = 3) -> dict:
    for item in items[:20]:
        call(item)
    ns = []
    for _ in range(rounds):
        for item in items:
            t0 = time.perf_counter_ns()
            call(item)
            ns.append(time.perf_counter_ns() - t0)
    arr = np.asarray(ns) / 1e3
    return {"median_us": float(np.median(arr)), "p90_us": float(np.percentile(arr, 90)), "calls": len(ns)}


def run(runs_dir: str, artifacts_dir: str, count: int) -> dict:
    import torch

    out = {"load_average": os.getloadavg()[0], "torch": torch.__version__, "windows": count, "models": {}}
    previous = torch.get_num_threads()
    for kind in KINDS:
        encoder, source = _encoder(kind, runs_dir)
        windows, masks = _windows(count, 64)
        items = [(torch.from_numpy(windows[i:i + 1]), torch.from_numpy(masks[i:i + 1])) for i in range(len(windows))]
        row = {"source": source}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                row[f"torch_{threads}_thread"] = _time(lambda wm: encoder(*wm), items)
        torch.set_num_threads(1)
        scripted = _scripted(encoder, items)
        row["torchscript_1_thread"] = _time(lambda wm: scripted(*wm), items)
        torch.set_num_threads(previous)
        artifact = os.path.join(artifacts_dir, kind)
        if os.path.exists(os.path.join(artifact, "manifest.json")):
            from runtime.onnx_cost import OnnxCostFunction

            cost = OnnxCostFunction(artifact)
            (win, mask), _, binding = cost._encoder.buffers(1)

            def onnx_call(i):
                win[0] = windows[i]
                mask[0] = masks[i]
                cost._encoder.run(binding)

            row["onnx_1_thread"] = _time(onnx_call, list(range(len(windows))))
        out["models"][kind] = row
        click.echo(f"{NAMES[kind]:15s} torch 1 thread {row['torch_1_thread']['median_us']:7.0f} us  "
                   f"2 threads {row['torch_2_thread']['median_us']:7.0f} us  "
                   f"TorchScript {row['torchscript_1_thread']['median_us']:7.0f} us"
                   + (f"  onnxruntime {row['onnx_1_thread']['median_us']:6.0f} us" if "onnx_1_thread" in row else "")
                   + f"   ({source})")
    return out


def markdown(summary: dict) -> str:
    lines = ["# Encoder latency, one window (batch 1)", "",
             f"Generated by `python benchmarks/encoders.py` (torch {summary['torch']}, load average "
             f"{summary['load_average']:.2f}, {summary['windows']} real scenario-ii tail windows x 3 rounds).", "",
             "| encoder | torch eager, 1 thread: median us | p90 | eager, 2 threads: median us | p90 | "
             "TorchScript frozen, 1 thread: median us | p90 | onnxruntime, 1 thread: median us | p90 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, row in summary["models"].items():
        onnx = row.get("onnx_1_thread", {})
        lines.append(f"| {NAMES[kind]} | {row['torch_1_thread']['median_us']:.0f} | {row['torch_1_thread']['p90_us']:.0f} | "
                     f"{row['torch_2_thread']['median_us']:.0f} | {row['torch_2_thread']['p90_us']:.0f} | "
                     f"{row['torchscript_1_thread']['median_us']:.0f} | {row['torchscript_1_thread']['p90_us']:.0f} | "
                     f"{onnx.get('median_us', float('nan')):.0f} | {onnx.get('p90_us', float('nan')):.0f} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--runs", "runs_dir", default="runs", show_default=True, help="Folder with runs/<kind> training runs.")
@click.option("--artifacts", "artifacts_dir", default="artifacts", show_default=True, help="Exported artifacts.")
@click.option("--windows", "count", type=click.IntRange(min=10), default=300, show_default=True,
              help="Distinct windows timed per model.")
@click.option("--out", "out_dir", default=os.path.join(REPO, "benchmarks", "results"), show_default=True)
def main(runs_dir, artifacts_dir, count, out_dir):
    summary = run(runs_dir, artifacts_dir, count)
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(os.path.join(out_dir, "encoders.json"), json.dumps(summary, indent=2))
    atomic_write_text(os.path.join(out_dir, "encoders.md"), markdown(summary))


if __name__ == "__main__":
    main()
