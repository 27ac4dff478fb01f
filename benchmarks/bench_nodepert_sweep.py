"""Throughput of a whole NodePert learning-rate sweep (default fig_nodepert_depth), as Snakemake batches it.

The figure's runs are expanded and grouped into vectorised batches exactly as the workflow does
(``impls.common.plan.build_plan``: one batch per rule x depth, the learning rates vmapped). Each
batch is built with the real ``impls.nodepert.train.BatchProgram`` and trained in-process:

* ``first_s``: compile + initial evaluation + the first epoch (train + evaluation), i.e. what a
  train job pays once on top of process start-up (not included: JAX import, data loading);
* ``epoch_s``: the median of the next ``--epochs - 1`` epochs (train + evaluation), or of one
  further epoch when ``--epochs 1`` is asked for a quick estimate at cpu scale.

Reported per batch and for the sweep: runs/s = runs / sweep time and epochs/s (run-epochs per
second: runs x epochs / sweep time), where the sweep time is the *measured* sum over batches of
``first_s + (E - 1) x epoch_s`` when every epoch was trained (``--epochs`` = the figure's), and is
marked ``extrapolated`` otherwise (E = the figure's epoch budget at that scale).

    python benchmarks/bench_nodepert_sweep.py --scale smoke                 # every epoch, ~1 min
    python benchmarks/bench_nodepert_sweep.py --scale cpu --epochs 2        # 2 of 10 epochs timed
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from impls.common import datasets, plan as planlib  # noqa: E402
from impls.nodepert.compiled import CompiledBatch as BatchProgram, load_arrays  # noqa: E402


def dataset_dir(name: str) -> Path:
    """resources/datasets when the workflow has built the file, else a cache under benchmarks/out."""
    for d in (ROOT / "resources" / "datasets", ROOT / "benchmarks" / "out" / "datasets"):
        if (d / f"{name}.npz").exists():
            return d
    out = ROOT / "benchmarks" / "out" / "datasets"
    datasets.prepare_dataset(name, out / f"{name}.npz", download=False)
    return out


def time_batch(specs: list[dict], epochs: int) -> dict:
    """Train one batch in-process for ``epochs`` epochs; times per epoch (train + evaluation)."""
    spec0 = specs[0]
    arrays = load_arrays(spec0, dataset_dir(spec0["dataset"]))
    program = BatchProgram(spec0, arrays)
    seeds = np.array([s["seed"] for s in specs])
    lrs = np.array([s["hparams"]["lr"] for s in specs], np.float32)
    times = []
    t0 = time.perf_counter()
    params, states, keys = program.init(seeds, lrs)
    jax.block_until_ready(program.evaluate(params))
    for epoch in range(max(epochs, 2)):
        params, states, _ = program.train_epoch(params, states, keys, epoch)
        jax.block_until_ready(program.evaluate(params))
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
    return {"rule": spec0["rule"], "n_hl": spec0["model"].get("n_hl"), "width": spec0["model"].get("width"),
            "runs": len(specs), "first_s": times[0], "epoch_s": statistics.median(times[1:]),
            "epochs_timed": len(times)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=("smoke", "cpu", "paper"), default="smoke")
    ap.add_argument("--figure", default="fig_nodepert_depth")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs to train per batch (default: the figure's budget, i.e. a full measurement)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    config = planlib.load_yaml(ROOT / "config" / "config.yaml")
    plan = planlib.build_plan({**config, "scale": args.scale, "papers": ["nodepert"]}, ROOT)
    batches = plan.figure_batches(args.figure)
    budget = plan.runs[batches[0].run_ids[0]]["epochs"]
    epochs = min(args.epochs or budget, budget)
    res: dict = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "figure": args.figure,
                 "scale": args.scale, "jax": jax.__version__, "backend": jax.default_backend(),
                 "device": jax.devices()[0].device_kind, "cores": os.cpu_count(), "epoch_budget": budget,
                 "epochs_trained": epochs, "loadavg_before": os.getloadavg(), "batches": []}
    for b in batches:
        row = time_batch([plan.runs[r] for r in b.run_ids], epochs)
        row["sweep_s"] = row["first_s"] + (budget - 1) * row["epoch_s"]
        res["batches"].append(row)
        print(f"{row['rule']:>4s} n_hl {row['n_hl']} width {row['width']}: {row['runs']} runs | first epoch "
              f"{row['first_s']:.2f} s (incl. compile) | epoch {row['epoch_s']:.2f} s | "
              f"{row['runs'] / row['epoch_s']:.1f} run-epochs/s", flush=True)
    runs = sum(r["runs"] for r in res["batches"])
    total = sum(r["sweep_s"] for r in res["batches"])
    res.update({"runs": runs, "sweep_s": total, "runs_per_s": runs / total,
                "run_epochs_per_s": runs * budget / total, "extrapolated": epochs < budget,
                "loadavg_after": os.getloadavg()})
    how = f"extrapolated from {epochs} of {budget} epochs" if epochs < budget else "measured, every epoch"
    print(f"{args.figure} at {args.scale}: {runs} runs x {budget} epochs in {len(batches)} batches, "
          f"{total:.1f} s ({how}) -> {res['runs_per_s']:.3f} runs/s, {res['run_epochs_per_s']:.2f} epochs/s "
          f"(load {res['loadavg_before'][0]:.1f} -> {res['loadavg_after'][0]:.1f})")
    out = args.out or ROOT / "benchmarks" / "out" / f"nodepert_sweep_{args.scale}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
