"""Throughput of one training epoch (not a test): ``python -m impls.pepita.bench``.

Times ``StackedBatch.train_epoch`` on a real dataset for a rule/architecture and a number of
stacked seeds, after one warm-up epoch, and prints one JSON line per configuration with
seconds per epoch and milliseconds per training sample (per run). The issue's target:
PEPITA 784-1024-10, batch 64, Fashion-MNIST, under 3 s per epoch on 2 CPU cores (the original
numpy code: ≈1.9 ms per sample, ≈116 s per 60k-sample epoch; papers/pepita/README.md, "Compute at paper scale").
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from impls.common import specs as speclib
from impls.pepita.stacked import StackedBatch, load_images


def time_epochs(rule: str, arch: str, seeds: int, dataset: str, datasets_dir: Path, epochs: int,
                n_train: int | None = None, hparams: dict | None = None) -> dict:
    model = {"arch": "fc"} if arch == "fc" else {"arch": "conv"}
    spec = speclib.validate_spec(dict(paper="pepita", rule=rule, model=model, dataset=dataset,
                                      hparams={"lr": 0.1 if arch == "fc" else 0.01, **(hparams or {})}, seed=0, epochs=epochs,
                                      batch_size=64 if arch == "fc" else 50, scale="cpu",
                                      **({"data": {"n_train": n_train}} if n_train else {})))
    program = StackedBatch(spec, range(seeds), load_images(spec, datasets_dir), "cpu")
    with torch.no_grad():
        program.train_epoch(1)  # warm-up
        times = []
        for e in range(epochs):
            t0 = time.perf_counter()
            program.train_epoch(e + 2)
            times.append(time.perf_counter() - t0)
    n = len(program.x_train)
    best = min(times)
    return {"rule": rule, "arch": arch, "hparams": hparams or {}, "seeds": seeds, "dataset": dataset, "n_train": n,
            "threads": torch.get_num_threads(), "epoch_s": times, "best_epoch_s": best,
            "ms_per_sample_per_run": 1e3 * best / (n * seeds)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rules", nargs="+", default=["pepita"])
    p.add_argument("--arch", default="fc", choices=["fc", "conv"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1])
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--datasets-dir", type=Path, default=Path("resources/datasets"))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="string hparams, e.g. modulated_product=direct")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    hparams = dict(kv.split("=", 1) for kv in args.set)
    for rule in args.rules:
        for r in args.seeds:
            print(json.dumps(time_epochs(rule, args.arch, r, args.dataset, args.datasets_dir, args.epochs,
                                         args.n_train, hparams)), flush=True)


if __name__ == "__main__":
    main()
