"""Ours against the original wide_align code on the same data: per-epoch validation accuracy over seeds.

Both sides train the 3-layer net (width ``--width``, 3x3, strides 1, 2, 2, TF 'SAME'), plain SGD at
batch 100, on the same 55,000 / 5,000 train / validation split of a 60,000-image IDX set
(Fashion-MNIST here; the original's KMNIST split), and report validation accuracy after every epoch.

- the original: ``bench_wide_align_original.py`` (which imports ``train_kmnist.py`` from the checkout
  passed with ``--original`` and runs it with numpy seeds ``--original-seeds``) in its own TensorFlow
  environment (``--original-python``), as a subprocess; or its ``--out`` JSON from an earlier run
  (``--original-json``);
- ours: ``impls.wide_align.stacked.StackedRuns`` (the loop the Snakemake train jobs run), all seeds and
  lrs of a rule stacked in one batch, data from ``--npz`` (checked to hold the same images and labels
  as the IDX files in ``--data``), validation after every epoch; or the ``ours_runs`` of an earlier
  ``--out`` of this script (``--ours-json``).

The two sides draw from different generators (numpy's legacy seed vs our torch streams), so their
initial weights and batch orders differ for every seed: what is compared is the distribution over
seeds. Per (rule, lr) and epoch, ``benchmarks/parity.py`` gives mean ± sd per side, the difference of
the means (ours − original), its standard error and whether it lies within 2 standard errors.

    .venv/bin/python benchmarks/bench_wide_align_parity.py --original /tmp/wna \\
        --original-python /tmp/tfvenv/bin/python --rules bp alignada --lrs 1 --epochs 3 \\
        --seeds 0 1 2 --original-seeds 99 100 101 --out /tmp/wide_align_parity.json

Needs: the main venv (torch), ``resources/datasets/fashion_mnist.npz`` (``snakemake --cores 1
resources/datasets/fashion_mnist.npz``), and for a fresh original run a checkout of
FieteLab/Wide-Network-Alignment at d242886 plus a TensorFlow venv (see bench_wide_align_original.py).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.parity import compare, markdown  # noqa: E402

HERE = Path(__file__).resolve().parent
RULES = ("bp", "alignada", "alignzero", "fa", "dfa", "lastlayer")


def original_curves(rows: list[dict], width: int, epochs: int) -> dict[tuple[str, float], dict[int, list[float]]]:
    """{(rule, lr): {seed: val_acc per epoch}} from ``bench_wide_align_original.py --out`` rows of ``width``."""
    out: dict[tuple[str, float], dict[int, list[float]]] = {}
    for row in rows:
        if "val_acc" not in row or "seed" not in row:
            raise ValueError("the original's JSON has rows without 'val_acc'/'seed': rerun "
                             "bench_wide_align_original.py (with --seeds) to record accuracy")
        if row["width"] != width:
            continue
        if len(row["val_acc"]) < epochs:
            raise ValueError(f"the original's {row['rule']} lr {row['lr']} seed {row['seed']} has "
                             f"{len(row['val_acc'])} epochs, fewer than --epochs {epochs}")
        cell = out.setdefault((row["rule"], float(row["lr"])), {})
        if row["seed"] in cell:
            raise ValueError(f"the original's JSON has seed {row['seed']} twice for {row['rule']} lr {row['lr']}")
        cell[row["seed"]] = [float(v) for v in row["val_acc"][:epochs]]
    return out


def ours_curves(runs: list[dict], epochs: int) -> dict[tuple[str, float], dict[int, list[float]]]:
    """The same mapping from the ``ours_runs`` of an earlier ``--out`` of this script."""
    out: dict[tuple[str, float], dict[int, list[float]]] = {}
    for run in runs:
        if len(run["val_acc"]) < epochs:
            raise ValueError(f"our {run['rule']} lr {run['lr']} seed {run['seed']} has {len(run['val_acc'])} epochs, "
                             f"fewer than --epochs {epochs}")
        out.setdefault((run["rule"], float(run["lr"])), {})[run["seed"]] = [float(v) for v in run["val_acc"][:epochs]]
    return out


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip or plain) as a numpy array (the ubyte images/labels of the MNIST family)."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 8:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, body has {data.size} bytes")
    return data.reshape(dims)


def check_same_data(npz: Path, data_dir: Path) -> None:
    """Our cached dataset holds exactly the IDX files' training images and labels, in their order."""
    cached = np.load(npz)
    for key, name in (("x_train", "train-images-idx3-ubyte.gz"), ("y_train", "train-labels-idx1-ubyte.gz")):
        idx = read_idx(data_dir / name)
        if cached[key].shape != idx.shape or not np.array_equal(cached[key], idx):
            raise SystemExit(f"error: {npz} {key} differs from {data_dir / name}: "
                             "the two sides would not see the same data")


def run_original(args, tmp: Path) -> list[dict]:
    out = tmp / "original.json"
    cmd = [args.original_python, str(HERE / "bench_wide_align_original.py"), "--original", str(args.original),
           "--data", str(args.data), "--widths", str(args.width), "--rules", *args.rules,
           "--lrs", *map(str, args.lrs), "--seeds", *map(str, args.original_seeds), "--epochs", str(args.epochs),
           "--out", str(out)]
    print("original:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    return json.loads(out.read_text())


def run_ours(args) -> dict[tuple[str, float], dict[int, list[float]]]:
    import torch

    from impls.common import torch_loop
    from impls.wide_align.stacked import StackedRuns, load_images

    torch.set_num_threads(args.threads)
    torch_loop.keep_freed_memory()
    out = {}
    for rule in args.rules:
        specs = [{"paper": "wide_align", "rule": rule, "model": {"arch": "allconv", "depth": 3, "width": args.width},
                  "dataset": args.npz.stem, "hparams": {"lr": lr}, "seed": seed, "epochs": args.epochs,
                  "batch_size": 100, "scale": "cpu"} for lr in args.lrs for seed in args.seeds]
        data = load_images(specs[0], args.npz.parent)
        data["test"] = (data["test"][0][:100], data["test"][1][:100])  # not evaluated here
        prog = StackedRuns(specs, data, "cpu")
        t0 = time.perf_counter()
        curves = [[] for _ in specs]
        for _ in range(args.epochs):
            prog.train_epoch()
            for c, v in zip(curves, prog.evaluate("val")["val_acc"]):
                c.append(float(v))
        for spec, c in zip(specs, curves):
            out.setdefault((rule, float(spec["hparams"]["lr"])), {})[spec["seed"]] = c
        print(f"ours {rule}: {len(specs)} runs stacked, {time.perf_counter() - t0:.1f} s", flush=True)
        if args.out:  # so far, in case the run is stopped (reusable with --ours-json)
            args.out.write_text(json.dumps({"partial": True, "ours_runs": runs_list(out)}, indent=1))
    return out


def runs_list(ours: dict) -> list[dict]:
    return [{"rule": rule, "lr": lr, "seed": seed, "val_acc": c} for (rule, lr), mine in ours.items()
            for seed, c in mine.items()]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--original", type=Path, help="checkout of FieteLab/Wide-Network-Alignment (d242886)")
    p.add_argument("--original-python", default=None, help="python of a TensorFlow venv that runs the original")
    p.add_argument("--original-json", type=Path, nargs="+", default=None,
                   help="rows of earlier bench_wide_align_original.py --seeds ... --out runs (instead of running it)")
    p.add_argument("--ours-json", type=Path, default=None,
                   help="an earlier --out of this script: reuse its ours_runs instead of training ours")
    p.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    p.add_argument("--npz", type=Path, default=Path("resources/datasets/fashion_mnist.npz"))
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--rules", nargs="+", default=["bp", "alignada"], choices=RULES)
    p.add_argument("--lrs", type=float, nargs="+", default=[1.0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="our seeds")
    p.add_argument("--original-seeds", type=int, nargs="+", default=[99, 100, 101],
                   help="numpy seeds that replace the original's 99")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for ours (on a loaded machine, more threads than free cores spin and waste CPU)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.original_json is None and (args.original is None or args.original_python is None):
        p.error("give --original and --original-python (run the original), or --original-json")
    if args.epochs < 1 or args.width < 1:
        p.error("--epochs and --width must be >= 1")
    if len(set(args.seeds)) != len(args.seeds) or len(set(args.original_seeds)) != len(args.original_seeds):
        p.error("--seeds / --original-seeds must not repeat a seed")
    check_same_data(args.npz, args.data)

    load_before, started = os.getloadavg(), time.time()
    with tempfile.TemporaryDirectory(prefix="wna-parity-") as tmp:
        t0 = time.perf_counter()
        rows = ([r for f in args.original_json for r in json.loads(f.read_text())] if args.original_json
                else run_original(args, Path(tmp)))
        original_s = time.perf_counter() - t0
    theirs = original_curves(rows, args.width, args.epochs)
    t0 = time.perf_counter()
    ours = (ours_curves(json.loads(args.ours_json.read_text())["ours_runs"], args.epochs) if args.ours_json
            else run_ours(args))
    ours = {key: c for key, c in ours.items() if key[0] in args.rules and key[1] in args.lrs}
    ours_s = time.perf_counter() - t0

    cells = []
    for (rule, lr), mine in ours.items():
        if (rule, lr) not in theirs:
            print(f"\n{rule} lr {lr:g}: no original runs in the JSON; skipped")
            continue
        rows_cmp = compare(mine, theirs[(rule, lr)])
        print(f"\n### {rule}, width {args.width}, lr {lr:g}\n\n{markdown(rows_cmp, 'val acc %')}", flush=True)
        cells.append({"rule": rule, "lr": lr, "width": args.width, "epochs": args.epochs,
                      "ours": {str(s): c for s, c in mine.items()},
                      "original": {str(s): c for s, c in theirs[(rule, lr)].items()}, "comparison": rows_cmp})
    result = {"argv": sys.argv[1:], "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "original_s": round(original_s, 1), "ours_s": round(ours_s, 1), "cells": cells,
              "ours_runs": runs_list(ours)}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
