"""Epoch wall time per learning rule vs width (the paper's CIFAR fig. 7 / the issue's TF1 reference),
and a short cpu-scale accuracy + alignment sweep. Not a test: numbers depend on the machine.

    python benchmarks/bench_wide_align.py timing [--device cpu|cuda] [--threads 2] [--widths 8 64] [--rules ...]
    python benchmarks/bench_wide_align.py sweep --npz resources/datasets/fashion_mnist.npz [--device cuda] ...

timing: the 3-layer net (strides 1,2,2) on 55,000 28x28x1 images at batch 100 plus a validation pass over
5,000 images (int(N/B) full batches each), one run per process-batch (R = 1), after one untimed warm-up step --
the setting of the issue's TF1 reference (original code on a 2-core CPU: BP 5.6 / 38.7 s at width 8 / 64;
Align-ada 6.1 / 46.5, Align-zero 5.8 / 45.6, FA 5.9 / 42.7, DFA 14.0 / 46.2). Images are random (the time does
not depend on the values). ``--max-steps`` times only the first k training steps and extrapolates linearly to
the epoch (column ``extrapolated``). The "TF1 issue" column is the issue's, measured elsewhere; for a side-by-side
comparison run ``bench_wide_align_original.py --out FILE`` (the original code, on this machine) and pass
``--original FILE``.

sweep: trains rules x widths x lrs on a cached dataset with the real stacked runs (impls.wide_align.stacked.StackedRuns:
validation = first 5,000 training images, official test set apart), BP runs also accumulating the NTK
prediction W~ so the alignment score and its shuffled control are printed at the last epoch.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from impls.common import torch_loop  # noqa: E402
from impls.wide_align import models, rules  # noqa: E402

TF1_REFERENCE_S = {  # issue 7: original TF1 code, 2-core CPU, one epoch + validation pass
    ("bp", 8): 5.6, ("bp", 64): 38.7, ("alignada", 8): 6.1, ("alignada", 64): 46.5, ("alignzero", 8): 5.8,
    ("alignzero", 64): 45.6, ("fa", 8): 5.9, ("fa", 64): 42.7, ("dfa", 8): 14.0, ("dfa", 64): 46.2}


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_rule(rule, width, device, n_train=55_000, n_val=5_000, batch=100, max_steps=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = models.NetShape(1, 28, width, (1, 2, 2), 10)
    one = models.init_params(shape, torch.Generator().manual_seed(seed))
    params = {k: ([t.to(device) for t in v] if isinstance(v, list) else v.to(device))
              for k, v in models.stack_params([one]).items()}
    params0 = {k: ([t.clone() for t in v] if isinstance(v, list) else v.clone()) for k, v in params.items()}
    fb = rules.init_feedback(rule, shape, one, torch.Generator().manual_seed(seed + 1))
    if fb is not None:
        fb = {k: ([t[None].to(device) for t in v] if isinstance(v, list) else v[None].to(device)) for k, v in fb.items()}
    x_train = torch.rand(n_train, 1, 28, 28, generator=g).to(device)
    y_train = (torch.nn.functional.one_hot(torch.randint(0, 10, (n_train,), generator=g), 10).float() - 0.1).to(device)
    x_val = torch.rand(n_val, 1, 28, 28, generator=g).to(device)
    opt = rules.Optimizer("sgd", models.flat(params), torch.tensor([1.0], device=device))

    def step(i):
        x, y = x_train[i * batch:(i + 1) * batch], y_train[i * batch:(i + 1) * batch][None]
        dirs = rules.directions(rule, params, params0, fb, x, y, shape)[0]
        opt.step(models.flat(params), dirs)

    step(0)  # warm-up (untimed)
    _sync(device)
    steps = n_train // batch
    timed = min(steps, max_steps) if max_steps else steps
    t0 = time.perf_counter()
    for i in range(timed):
        step(i)
    _sync(device)
    train_s = (time.perf_counter() - t0) * steps / timed
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(n_val // batch):
            models.forward(params, x_val[i * batch:(i + 1) * batch], shape)[0].argmax(-1)
    _sync(device)
    return train_s, time.perf_counter() - t0, timed < steps


def timing(args):
    torch.set_num_threads(args.threads)
    if args.device == "cpu":
        torch_loop.keep_freed_memory()  # as impls.wide_align.train.make_program does
    rows = []
    for width in args.widths:
        for rule in args.rules:
            train_s, val_s, extra = time_rule(rule, width, args.device, max_steps=args.max_steps)
            ref = TF1_REFERENCE_S.get((rule, width))
            row = {"rule": rule, "width": width, "device": args.device, "threads": args.threads,
                   "train_s": round(train_s, 3), "val_s": round(val_s, 3), "epoch_plus_val_s": round(train_s + val_s, 3),
                   "extrapolated": extra, "tf1_reference_s": ref}
            rows.append(row)
            print(json.dumps(row), flush=True)
    measured = {}
    if args.original:  # rows of bench_wide_align_original.py --out, run on this machine
        measured = {(o["rule"], o["width"]): o["epoch_plus_val_s"] for o in json.loads(Path(args.original).read_text())}
        for r in rows:
            r["original_here_s"] = measured.get((r["rule"], r["width"]))
    bp = {r["width"]: r["epoch_plus_val_s"] for r in rows if r["rule"] == "bp"}
    print(f"\n{'rule':10s} {'width':>5s} {'ours s':>9s} {'x BP':>6s} {'original here s':>15s} {'TF1 issue s':>11s}")
    for r in rows:
        ratio = r["epoch_plus_val_s"] / bp[r["width"]] if r["width"] in bp else float("nan")
        ref = "" if r["tf1_reference_s"] is None else f"{r['tf1_reference_s']:.1f}"
        here = measured.get((r["rule"], r["width"]))
        here = "" if here is None else f"{here:.2f}"
        print(f"{r['rule']:10s} {r['width']:5d} {r['epoch_plus_val_s']:9.2f} {ratio:6.2f} {here:>15s} {ref:>11s}"
              f"{'  (extrapolated)' if r['extrapolated'] else ''}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


def sweep(args):
    from impls.wide_align import alignment
    from impls.wide_align.stacked import StackedRuns, load_images

    torch.set_num_threads(args.threads)
    out = []
    for width in args.widths:
        for rule in args.rules:
            specs = [{"paper": "wide_align", "rule": rule, "model": {"arch": "allconv", "depth": 3, "width": width},
                      "dataset": Path(args.npz).stem, "hparams": {"lr": lr, **({"score_epochs": [args.epochs]} if rule == "bp" else {})},
                      "seed": 99, "epochs": args.epochs, "batch_size": 100, "scale": "cpu"} for lr in args.lrs]
            data = load_images(specs[0], Path(args.npz).parent)
            prog = StackedRuns(specs, data, args.device)
            t0 = time.perf_counter()
            for epoch in range(1, args.epochs + 1):
                prog.train_epoch()
            if prog.scoring:
                prog.snapshot(args.epochs)
            val, test = prog.evaluate("val"), prog.evaluate("test")
            for i, lr in enumerate(args.lrs):
                row = {"rule": rule, "width": width, "lr": lr, "epochs": args.epochs, "val_acc": float(val["val_acc"][i]),
                       "test_acc": float(test["test_acc"][i]), "seconds": round(time.perf_counter() - t0, 1)}
                if prog.scoring:
                    snaps = {k: v[i].numpy() for k, v in prog.snapshots.items()}
                    scores = []
                    for l, ((ci, s), st) in enumerate(zip(prog.shape.layer_inputs(), prog.shape.strides)):
                        w0 = snaps[f"wbp_e0_l{l}"]
                        dw, dwt = snaps[f"wbp_e{args.epochs}_l{l}"] - w0, snaps[f"wt_e{args.epochs}_l{l}"] - w0
                        gen = torch.Generator().manual_seed(l)
                        sc = alignment.score(dw, dwt, ci, s, st, gen, args.probes)
                        ctrl = alignment.score(alignment.shuffled_change(snaps[f"wbp_e{args.epochs}_l{l}"], w0,
                                               torch.Generator().manual_seed(100 + l)), dwt, ci, s, st, gen, args.probes)
                        scores.append((round(sc, 3), round(ctrl, 3)))
                    row["score_control_per_layer"] = scores
                out.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["timing", "sweep"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--widths", type=int, nargs="+", default=[8, 64])
    p.add_argument("--rules", nargs="+", default=["bp", "alignada", "alignzero", "fa", "dfa"])
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--original", default=None,
                   help="JSON written by bench_wide_align_original.py --out on this machine: adds its times as a column")
    p.add_argument("--npz", default="resources/datasets/fashion_mnist.npz")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lrs", type=float, nargs="+", default=[5.0, 1.0])
    p.add_argument("--probes", type=int, default=20)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    (timing if args.mode == "timing" else sweep)(args)


if __name__ == "__main__":
    main()
