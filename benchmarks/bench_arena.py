"""What an epoch of each arena rule costs, one rule at a time on an otherwise idle machine.

The arena's own leaderboard times every rule inside its train job, and those jobs run side by side
(several at once on a workstation or a GPU), so its × BP columns carry the load of the others. This
benchmark measures the same thing alone: for every rule of ``--figure`` (tab_arena_leaderboard, the
default: every contender of ``impls.arena.contenders`` on the cpu-scale MLP 784-256-256-10; tab_arena_conv:
the rules with conv code on the conv net 32-32-32) it builds the real arena program
(``impls.arena.train.Program``) from that figure's cpu-scale run spec in papers/arena/paper.yaml, with
``--runs`` runs (seeds 0.. at one learning rate, vmapped or stacked as in the arena, or looped where the
arena loops), trains ``--epochs`` epochs on the first ``--n-train`` training examples, and reports
the CPU and wall seconds of a training epoch (epoch 1 left out: JAX compiles there) per run, and each
divided by BP's in the same framework. The rules run one after another in this one process, with
``--threads`` CPU threads (JAX's and PyTorch's pools); the load average is recorded before and after.

    .venv/bin/python benchmarks/bench_arena.py --npz resources/datasets/fashion_mnist.npz \\
        [--figure tab_arena_conv] [--runs 3] [--n-train 12800] [--epochs 4] [--threads 2]
        [--rules np fa_jax ...] [--out f.json]
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
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from impls.common.backend import configure_framework  # noqa: E402


def figure_specs(figure: str, scale: str = "cpu") -> dict[str, dict]:
    """Rule -> one run spec of ``figure`` at ``scale`` (papers/arena/paper.yaml, through the workflow's plan)."""
    from impls.common.plan import build_plan, load_yaml

    plan = build_plan({**load_yaml(ROOT / "config" / "config.yaml"), "scale": scale, "papers": ["arena"]}, ROOT)
    if figure not in plan.figures:
        raise SystemExit(f"--figure {figure}: not an arena figure (one of {sorted(plan.figures)})")
    specs = {}
    for run_id in plan.figures[figure].run_ids:
        specs.setdefault(plan.runs[run_id]["rule"], plan.runs[run_id])
    return specs


def _spec(base: dict, seed: int, lr: float, dataset: str) -> dict:
    """``base`` (a run spec of the figure) at one seed, learning rate and dataset."""
    return {**base, "seed": seed, "dataset": dataset, "hparams": {**base["hparams"], "lr": lr}}


def time_rule(rule: str, base: dict, args, datasets_dir: Path) -> dict:
    """CPU and wall seconds per training epoch and run of one contender (median over epochs 2..)."""
    from impls.arena import data as arena_data
    from impls.arena.train import Program
    from impls.common.driver import Progress

    specs = [_spec(base, seed, args.lr, args.npz.stem) for seed in range(args.runs)]
    full = arena_data.load

    def first_examples(spec, directory):   # the arena's data, its training part cut to n_train examples
        d = full(spec, directory)
        n = args.n_train
        return d._replace(x_train=d.x_train[:n], y_train=d.y_train[:n], labels_train=d.labels_train[:n])

    arena_data.load = first_examples
    try:
        program = Program(SimpleNamespace(specs=specs), SimpleNamespace(datasets_dir=datasets_dir))
    finally:
        arena_data.load = full
    cpu, wall = [], []
    for epoch in range(1, args.epochs + 1):
        out = program.train_epoch(Progress(epoch=epoch, epochs=args.epochs, history={}, diverged=None, stopped=None))
        if epoch > 1:
            cpu.append(float(out["time_cpu_s"][0]))
            wall.append(float(out["time_wall_s"][0]))
    return {"rule": rule, "framework": program.trainer.__class__.__name__.replace("Trainer", "").lower(),
            "cpu_s_per_epoch_run": statistics.median(cpu), "wall_s_per_epoch_run": statistics.median(wall),
            "cpu_s_all": cpu, "wall_s_all": wall, "step_memory_mb": program.step_memory_mb}


def relative_to_bp(rows: list[dict]) -> None:
    """Add ``cpu_vs_bp`` and ``wall_vs_bp``: each rule's time over BP's in its framework."""
    from impls.arena.contenders import BASELINE

    base = {fw: next((r for r in rows if r["rule"] == ref), None) for fw, ref in BASELINE.items()}
    for row in rows:
        ref = base.get(row["framework"])
        for clock in ("cpu", "wall"):
            row[f"{clock}_vs_bp"] = row[f"{clock}_s_per_epoch_run"] / ref[f"{clock}_s_per_epoch_run"] if ref else None


def markdown(rows: list[dict], steps: int) -> str:
    lines = ["| rule | framework | CPU ms per step and run | × BP | wall ms per step and run | × BP |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = lambda v: "—" if v is None else f"{v:.2f}"   # noqa: E731
        lines.append(f"| {r['rule']} | {r['framework']} | {1000 * r['cpu_s_per_epoch_run'] / steps:.3f} | "
                     f"{ratio(r['cpu_vs_bp'])} | {1000 * r['wall_s_per_epoch_run'] / steps:.3f} | "
                     f"{ratio(r['wall_vs_bp'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--npz", type=Path, required=True,
                        help="a dataset cache, e.g. resources/datasets/fashion_mnist.npz")
    parser.add_argument("--figure", default="tab_arena_leaderboard",
                        help="whose cpu-scale runs to time: tab_arena_leaderboard (MLP) or tab_arena_conv")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=12800,
                        help="training examples per epoch (of the 55,000 the arena uses)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per rule; the first (compilation) is not timed")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rules", nargs="*", help="arena ids (default: every contender)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 compiles and is not timed)")
    if not args.npz.exists():
        parser.error(f"--npz {args.npz}: no such file (build it with the dataset rule, e.g. "
                     f"snakemake --cores 1 resources/datasets/fashion_mnist.npz)")
    configure_framework("jax+torch", args.threads, None)
    bases = figure_specs(args.figure)
    rules = args.rules or list(bases)
    unknown = sorted(set(rules) - set(bases))
    if unknown:
        parser.error(f"--rules: not rules of {args.figure}: {unknown} (its rules: {sorted(bases)})")
    batch_size = next(iter(bases.values()))["batch_size"]
    record = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
              "figure": args.figure, "model": next(iter(bases.values()))["model"], "batch_size": batch_size,
              "cpus": os.cpu_count(), "threads": args.threads, "runs": args.runs, "n_train": args.n_train,
              "epochs": args.epochs, "lr": args.lr, "loadavg_before": os.getloadavg()}
    rows = []
    for rule in rules:
        t0 = time.perf_counter()
        rows.append(time_rule(rule, bases[rule], args, args.npz.parent))
        print(f"{rule}: {rows[-1]['cpu_s_per_epoch_run']:.3f} CPU-s, {rows[-1]['wall_s_per_epoch_run']:.3f} wall-s "
              f"per epoch and run ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    relative_to_bp(rows)
    record.update(loadavg_after=os.getloadavg(), rows=rows)
    steps = args.n_train // batch_size
    print(markdown(rows, steps))
    print(f"\n{args.runs} runs per rule, {steps} steps per epoch, {args.threads} threads; load average before "
          f"{record['loadavg_before'][0]:.2f}, after {record['loadavg_after'][0]:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
