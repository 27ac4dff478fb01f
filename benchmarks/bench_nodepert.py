"""Throughput of the node-perturbation impl (impls/nodepert) on Fashion-MNIST, CPU or GPU.

What it measures (all with the real ``BatchProgram`` of ``impls.nodepert.train``):

a. ``np`` vs ``sgd``: training steps/s of ONE run (a vmapped batch of size 1, so no gain
   from vectorising runs) of 784-500-500-10, batch 100, 600 steps = one epoch of
   ``train_epoch`` (a jitted ``lax.scan``). Goal: np/sgd >= 0.8.
b. ``sgd`` on 784-1024-10, batch 100: seconds per training epoch (600 steps) and, apart, the
   full per-epoch evaluation (``evaluate``: 60k train + 10k test forwards). Goal: < 2 s/epoch.
c. vectorisation: ``np`` 784-500-500-10 with 1, 4 and 8 runs in one batch: wall steps/s and
   run-steps/s (runs x steps / s), i.e. what ``jax.vmap`` over runs buys.

How: each program is compiled and run once as warm-up (compile time excluded), then timed
``--repeats`` times with ``time.perf_counter`` around the call and ``jax.block_until_ready`` on
its outputs; the median is reported. ``train_epoch`` donates params/states, so each repeat
feeds the previous repeat's outputs back in (as the training loop does). The dataset is cached
once with ``impls.common.datasets.prepare_dataset`` under ``benchmarks/out/datasets/``.

    python benchmarks/bench_nodepert.py [--repeats 5] [--out benchmarks/out/nodepert.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from impls.common import datasets  # noqa: E402
from impls.nodepert.compiled import CompiledBatch as BatchProgram, load_arrays  # noqa: E402

DATA_DIR = ROOT / "benchmarks" / "out" / "datasets"
TIMES: list[list[float]] = []
HPARAMS = {"np": {"lr": 0.01, "sigma": 1e-4}, "sgd": {"lr": 0.01}}


def spec(rule: str, hidden: list[int]) -> dict:
    return {"paper": "nodepert", "rule": rule, "model": {"arch": "mlp", "hidden": hidden, "activation": "relu"},
            "dataset": "fashion_mnist", "hparams": HPARAMS[rule], "seed": 0, "epochs": 1,
            "batch_size": 100, "scale": "cpu"}


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` (returns what to block on) over ``repeats`` calls after a warm-up.

    All times go to ``TIMES``, the warm-up (compile + one call) first, for the JSON's spread.
    """
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    TIMES.append(times)
    return statistics.median(times[1:])


def spread(i: int) -> dict:
    return {"min_max": [min(TIMES[i][1:]), max(TIMES[i][1:])], "first_call_s": TIMES[i][0]}


def epoch_seconds(program: BatchProgram, n_runs: int, repeats: int) -> tuple[float, float]:
    """Median seconds of one training epoch for ``n_runs`` vmapped runs, and the final mean loss."""
    carry = list(program.init(np.arange(n_runs), np.full(n_runs, 0.01, np.float32)))
    losses = []

    def run():
        carry[0], carry[1], loss = program.train_epoch(carry[0], carry[1], carry[2], 0)
        losses.append(loss)
        return carry[0], loss

    secs = timed(run, repeats)
    return secs, float(np.nanmean(np.asarray(losses[-1])))


def cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")),
                platform.processor() or "unknown")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "nodepert.json")
    args = ap.parse_args(argv)
    if not (DATA_DIR / "fashion_mnist.npz").exists():
        datasets.prepare_dataset("fashion_mnist", DATA_DIR / "fashion_mnist.npz", download=False)
    arrays = load_arrays(spec("sgd", []), DATA_DIR)
    res: dict = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "jax": jax.__version__,
                 "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
                 "cpu": cpu_model(), "cores": os.cpu_count(), "repeats": args.repeats,
                 "xla_flags": os.environ.get("XLA_FLAGS", ""), "loadavg_before": os.getloadavg()}

    # a. np vs sgd, one run
    a = {}
    for rule in ("np", "sgd"):
        prog = BatchProgram(spec(rule, [500, 500]), arrays)
        secs, loss = epoch_seconds(prog, 1, args.repeats)
        a[rule] = {"epoch_s": secs, "epoch_s_spread": spread(-1),
                   "steps_per_s": prog.steps_per_epoch / secs, "final_loss": loss}
    a["ratio_np_over_sgd"] = a["np"]["steps_per_s"] / a["sgd"]["steps_per_s"]
    a["goal_met"] = a["ratio_np_over_sgd"] >= 0.8
    res["a_np_vs_sgd_784_500_500_10"] = a

    # b. sgd 784-1024-10: training epoch and full evaluation
    prog = BatchProgram(spec("sgd", [1024]), arrays)
    secs, loss = epoch_seconds(prog, 1, args.repeats)
    params = prog.init(np.arange(1), np.full(1, 0.01, np.float32))[0]
    eval_s = timed(lambda: prog.evaluate(params), args.repeats)
    res["b_sgd_784_1024_10"] = {"train_epoch_s": secs, "train_epoch_s_spread": spread(-2),
                                "steps_per_s": prog.steps_per_epoch / secs,
                                "eval_s": eval_s, "epoch_plus_eval_s": secs + eval_s,
                                "final_loss": loss, "goal_met": secs < 2.0}

    # c. vectorisation over runs
    prog = BatchProgram(spec("np", [500, 500]), arrays)
    c = {}
    for n in (1, 4, 8):
        secs, _ = epoch_seconds(prog, n, args.repeats)
        c[str(n)] = {"epoch_s": secs, "epoch_s_spread": spread(-1), "steps_per_s": prog.steps_per_epoch / secs,
                     "run_steps_per_s": n * prog.steps_per_epoch / secs}
    for n in c:
        c[n]["speedup_vs_1"] = c[n]["run_steps_per_s"] / c["1"]["run_steps_per_s"]
    res["c_vmap_np_784_500_500_10"] = c
    res["loadavg_after"] = os.getloadavg()

    print(f"jax {res['jax']} ({res['backend']}) | {res['cpu']} | {res['cores']} cores | {res['date']}")
    print(f"{'measurement':44s} {'value':>10s}")
    rows = [("a. np  784-500-500-10, 1 run  steps/s", a["np"]["steps_per_s"]),
            ("a. sgd 784-500-500-10, 1 run  steps/s", a["sgd"]["steps_per_s"]),
            ("a. ratio np/sgd (goal >= 0.8)", a["ratio_np_over_sgd"]),
            ("b. sgd 784-1024-10 train epoch s (goal < 2)", res["b_sgd_784_1024_10"]["train_epoch_s"]),
            ("b. sgd 784-1024-10 full eval s (70k fwd)", eval_s)]
    rows += [(f"c. np {n} run(s): steps/s | run-steps/s", (v["steps_per_s"], v["run_steps_per_s"]))
             for n, v in c.items()]
    for name, val in rows:
        print(f"{name:44s} " + (" | ".join(f"{x:.1f}" for x in val) if isinstance(val, tuple) else f"{val:10.3f}"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
