"""Ours (impls/nodepert) against the ORIGINAL node-perturbation code, on the same Fashion-MNIST data.

It does not contain or copy the original: it imports the paper-era modules of a checkout of
countzerozzz/nodepert (commit de296eb, the code the paper's figures come from) that you pass with
``--original``, and runs them in this process next to ours:

1. **One update, same weights, same noise** (deterministic, needs no seeds): the original's
   initial weights for ``--seeds[0]`` and the first minibatch; the original's ``npupdate`` and
   ``sgdupdate`` (``models/optim.py``) against our ``np`` and ``sgd`` estimators fed the same
   weights and, for NP, the noise the original's noisy pass draws for that step (read back from its
   ``batchnoisyforward``). Reported per layer: the largest absolute difference of the gradient
   estimates relative to the largest entry of the original's, and the cosine of the whole update.
   Agreement to float32 rounding is the expected result. With ``--head DIR`` (a checkout of the
   2023 HEAD, 5e541e1) HEAD's ``npupdate`` is evaluated on the same weights and noise too, against
   our ``np_batch_scalar`` (HEAD's estimator: one scalar batch loss difference) and against the
   paper-era estimate.
2. **Training curves over seeds**: the vary_lr protocol of the original (``experiments/vary_lr.py``:
   PRNGKey(seed), split once, ``fc.init``; its ``train.train`` loop, which splits the key before
   every minibatch) with the original's ``fc.batchforward`` and ``npupdate``/``sgdupdate``; ours is
   ``impls.nodepert.compiled.CompiledBatch`` (the training step of every nodepert run), the seeds of
   one rule and learning rate vmapped in one batch. Both sides: 784-``--hidden``-10, ReLU hidden
   units, sigmoid output, per-example MSE, Glorot-normal weights and zero biases (each side's own
   random draws), plain SGD, batch ``--batch-size``, the same minibatches in the same order every
   epoch (IDX file order, no shuffling), one scalar mean/std over all 60,000 training images, test
   accuracy on the same test images after every epoch. Per epoch and setting the script reports each
   side's mean ± sd over seeds, the difference of the means and its standard error
   (``benchmarks/parity.py``).

What stands in for the original's own pieces (nothing of the checkout is edited):

- its data module (``data_loaders/fmnist_loader.py``, TensorFlow Datasets, which downloads) is
  replaced by ``OriginalData``: the same interface (``get_data_batches``, ``trainsplit``,
  ``num_pixels``, ``num_classes``) over the IDX arrays both sides train on. So the original here
  sees the IDX file order, not TFDS's record order;
- ``npimports.py`` is not imported (it pulls in the data module and ``jax.experimental.optimizers``
  / ``jax.ops.index_update``, which current JAX removed); the modules the benchmark needs
  (``models/fc.py``, ``models/optim.py``, ``models/losses.py``, ``models/metrics.py``, ``train.py``)
  import as they are under JAX 0.10, so no API is shimmed;
- both sides run in one process, and importing ours sets JAX's default matmul precision to
  "highest" (spec: σ = 1e-4 is below TF32 rounding). On a CPU this changes nothing; on a GPU it
  gives the original full float32 matmuls too.

Needs the original's checkout only (its requirements beyond JAX are TensorFlow Datasets and pandas,
which the modules used here do not import):

    git clone https://github.com/countzerozzz/nodepert /tmp/nodepert && git -C /tmp/nodepert checkout de296eb
    .venv/bin/python benchmarks/bench_nodepert_original.py --original /tmp/nodepert \\
        [--head /tmp/nodepert-head] [--rules np sgd] [--lrs 1e-3 1e-2] [--seeds 0 1 2 3 4] \\
        [--epochs 5] [--n-train 60000] [--n-test 10000] [--out benchmarks/out/nodepert_original.json]

With the defaults (2 rules x 2 learning rates x 5 seeds x 5 epochs of 60,000 images per side) it took
34.5 min on a 2-core machine at load average 7-17 (mostly other jobs); ``--n-train`` and
``--epochs`` shrink it.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.parity import compare, markdown  # noqa: E402
from impls.common.datasets import read_idx  # noqa: E402  (the IDX reader; read_idx is part of this module's API)

IDX_FILES = {"x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
             "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz"}
ORIGINAL_MODULES = ("models/fc.py", "models/optim.py", "models/losses.py", "models/metrics.py", "train.py")
SIGMA = 1e-4   # the original's fc.nodepert_noisescale (checked against the checkout at import)
EVAL_BATCH = 100  # the original's compute_metrics evaluates in minibatches of 100
N_CLASSES = 10


# --------------------------------------------------------------------------- data (pure)


def prepare_arrays(raw: dict[str, np.ndarray], n_train: int, n_test: int, batch_size: int) -> dict:
    """The arrays both sides train and test on.

    Images flattened and standardised with one mean/std over all pixels of the FULL training set
    (the original's loader computes its statistics on the whole train split whatever subset it
    trains on); then the first ``n_train`` training and ``n_test`` test images in file order.
    ``n_train`` must be a multiple of ``batch_size`` and of 100, ``n_test`` of 100 (the original
    averages accuracies over minibatches of 100, equal to the full-split accuracy only then).
    """
    if not 0 < n_train <= len(raw["x_train"]) or not 0 < n_test <= len(raw["x_test"]):
        raise ValueError(f"n_train={n_train} / n_test={n_test} outside 1..{len(raw['x_train'])} / "
                         f"1..{len(raw['x_test'])}")
    if n_train % batch_size or n_train % EVAL_BATCH or n_test % EVAL_BATCH:
        raise ValueError(f"n_train={n_train} must be a multiple of the batch size {batch_size} and of "
                         f"{EVAL_BATCH}, n_test={n_test} of {EVAL_BATCH}")
    x = raw["x_train"].reshape(len(raw["x_train"]), -1).astype(np.float64)
    mean, std = x.mean(), x.std()

    def norm(images):
        return ((images.reshape(len(images), -1).astype(np.float64) - mean) / std).astype(np.float32)

    return {"x_train": norm(raw["x_train"][:n_train]), "y_train": raw["y_train"][:n_train].astype(np.int32),
            "x_test": norm(raw["x_test"][:n_test]), "y_test": raw["y_test"][:n_test].astype(np.int32),
            "image_shape": (28, 28, 1), "mean": float(mean), "std": float(std)}


def one_hot(labels: np.ndarray, k: int = N_CLASSES) -> np.ndarray:
    return (np.asarray(labels)[:, None] == np.arange(k)).astype(np.float32)


SPLIT = re.compile(r"^(train|test)\[:100%\]$")


class OriginalData:
    """Stands in for the original's data module (``data_loaders/*_loader.py``) in ``train.train``.

    ``get_data_batches(batchsize, split)`` yields (x, one-hot y) minibatches in file order of the
    split ``'train[:100%]'`` or ``'test[:100%]'`` (the only two the original's ``train.py`` asks
    for); here the "full" splits are the arrays given, which may be subsets of the dataset.
    """

    trainsplit = "train[:100%]"
    testsplit = "test[:100%]"
    num_classes = N_CLASSES

    def __init__(self, arrays: dict):
        self.arrays = arrays
        self.num_pixels = arrays["x_train"].shape[1]

    def get_data_batches(self, batchsize: int = 100, split: str = "train[:100%]"):
        m = SPLIT.match(split)
        if not m:
            raise ValueError(f"OriginalData serves 'train[:100%]' and 'test[:100%]' only, not {split!r}")
        x, y = self.arrays[f"x_{m.group(1)}"], self.arrays[f"y_{m.group(1)}"]
        if len(x) % batchsize:
            raise ValueError(f"{len(x)} {m.group(1)} images are not whole minibatches of {batchsize}")
        for start in range(0, len(x), batchsize):
            yield x[start:start + batchsize], one_hot(y[start:start + batchsize])


# --------------------------------------------------------------------------- comparisons (pure)


def to_ours(original_params) -> list[dict]:
    """The original's [(W, b), ...] (W of shape (out, in), as ours) as our [{"w", "b"}, ...]."""
    return [{"w": np.asarray(w), "b": np.asarray(b)} for w, b in original_params]


def agreement(ours: list[dict], original) -> dict:
    """How close two gradient estimates (ours as [{"w", "b"}], the original's as [(dW, db)]) are.

    Per layer: max |ours − original| / max |original| for W and b; overall: the cosine of the two
    flattened estimates and the ratio of their norms.
    """
    if len(ours) != len(original):
        raise ValueError(f"{len(ours)} layers against {len(original)}")
    layers, a, b = [], [], []
    for mine, (w, bias) in zip(ours, original):
        row = {}
        for key, theirs in (("w", w), ("b", bias)):
            o, t = np.asarray(mine[key], np.float64), np.asarray(theirs, np.float64)
            if o.shape != t.shape:
                raise ValueError(f"shape {o.shape} against {t.shape}")
            scale = np.abs(t).max()
            row[f"{key}_max_rel_diff"] = float(np.abs(o - t).max() / scale) if scale > 0 else float(np.abs(o).max())
            a.append(o.ravel())
            b.append(t.ravel())
        layers.append(row)
    a, b = np.concatenate(a), np.concatenate(b)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return {"layers": layers, "max_rel_diff": max(max(r.values()) for r in layers),
            "cosine": float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan"),
            "norm_ratio": float(na / nb) if nb > 0 else float("nan")}


def shared_noise(xi_batched) -> list[np.ndarray]:
    """The original's noise per layer, returned by its vmapped noisy pass as (B, out) rows that
    are all equal (one draw shared by the minibatch): the one row, after checking that they are."""
    out = []
    for l, xi in enumerate(xi_batched):
        xi = np.asarray(xi)
        if not np.array_equal(xi, np.broadcast_to(xi[0], xi.shape)):
            raise ValueError(f"layer {l}: the original's noise differs between examples; expected one shared draw")
        out.append(xi[0])
    return out


def np_estimate_float64(params: list[dict], x, y, noise, sigma: float, batch_scalar: bool = False) -> list[dict]:
    """The node-perturbation estimate in float64 numpy (papers/nodepert/README.md, "The node-perturbation estimate"),
    the reference both float32 sides are measured against: δL_i is a difference of two losses ≈ 0.1–0.3 that differ by
    ≈ 1e-6, so float32 keeps only about two digits of it and two float32 codes agree only to ≈ 1 %.

    ``batch_scalar``: HEAD's estimator, one δL = mean_i δL_i and the batch-mean presynaptic activity.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)

    def run(xis):
        h, inputs = x, []
        for l, layer in enumerate(params):
            inputs.append(h)
            a = h @ np.asarray(layer["w"], np.float64).T + np.asarray(layer["b"], np.float64)
            if xis is not None:
                a = a + np.asarray(xis[l], np.float64)
            h = 1.0 / (1.0 + np.exp(-a)) if l == len(params) - 1 else np.maximum(a, 0.0)
        return np.mean((h - y) ** 2, axis=1), inputs

    clean, _ = run(None)
    noisy, inputs = run(noise)
    delta = noisy - clean
    xis = [np.asarray(xi, np.float64) for xi in noise]
    if batch_scalar:
        scale = delta.mean() / sigma ** 2
        return [{"w": scale * np.outer(xi, h.mean(0)), "b": scale * xi} for xi, h in zip(xis, inputs)]
    coef = delta / (len(x) * sigma ** 2)
    return [{"w": np.outer(xi, coef @ h), "b": xi * coef.sum()} for xi, h in zip(xis, inputs)]


def as_pairs(grads: list[dict]) -> list[tuple]:
    return [(g["w"], g["b"]) for g in grads]


def settings(rules, lrs) -> list[tuple[str, float]]:
    return [(rule, float(lr)) for rule in rules for lr in lrs]


def summarise(ours: dict, original: dict) -> list[dict]:
    """Per (rule, lr): ``parity.compare`` of the per-seed test-accuracy curves (epochs 1..E; the
    epoch-0 accuracy of the untrained net is kept apart), plus the worst epoch's verdict."""
    out = []
    for key in ours:
        o = {s: c[1:] for s, c in ours[key].items()}
        r = {s: c[1:] for s, c in original[key].items()}
        rows = compare(o, r)
        ratios = [abs(x["diff"]) / x["se"] for x in rows if x["se"] > 0]
        out.append({"rule": key[0], "lr": key[1], "rows": rows,
                    "epoch0": {**compare({s: c[:1] for s, c in ours[key].items()},
                                         {s: c[:1] for s, c in original[key].items()})[0], "epoch": 0},
                    "max_diff_over_se": max(ratios) if ratios else float("nan"),
                    "all_within_2se": all(x["verdict"] in ("within 2 SE", "identical") for x in rows)})
    return out


# --------------------------------------------------------------------------- the original


def load_original(path: Path):
    """The paper-era modules of the checkout at ``path`` (fc, optim, train), checked for σ."""
    missing = [m for m in ORIGINAL_MODULES if not (path / m).is_file()]
    if missing:
        sys.exit(f"error: --original {path} lacks {', '.join(missing)}; pass a checkout of "
                 "countzerozzz/nodepert at de296eb (paper era)")
    sys.path.insert(0, str(path))
    import models.fc as fc
    import models.optim as optim
    import train
    if fc.nodepert_noisescale != SIGMA:
        sys.exit(f"error: the original's noise scale is {fc.nodepert_noisescale}, this benchmark assumes {SIGMA}")
    return fc, optim, train


def load_head(path: Path):
    """HEAD's (5e541e1) ``nodepert.optim`` with its FC forward passes plugged in, as its main.py does."""
    if not (path / "nodepert" / "optim.py").is_file():
        sys.exit(f"error: --head {path} has no nodepert/optim.py; pass a checkout of countzerozzz/nodepert at 5e541e1")
    sys.path.insert(0, str(path))
    import nodepert.model.fc as head_fc
    import nodepert.optim as head_optim
    head_optim.forward = head_fc.build_batchforward()
    head_optim.noisyforward = head_fc.build_batchnoisyforward()
    return head_fc, head_optim


def original_init(fc, sizes, seed):
    """vary_lr.py's start: PRNGKey(seed), split once, fc.init; the same key then drives training."""
    from jax import random
    key, _ = random.split(random.PRNGKey(seed))
    return fc.init(sizes, key), key


def train_original(fc, optim, train, data, rule, lr, seed, sizes, epochs, batch_size):
    """Per-epoch test accuracy (epoch 0 first) of one original run, via its own ``train.train``."""
    params, key = original_init(fc, sizes, seed)
    update = {"np": optim.npupdate, "sgd": optim.sgdupdate}[rule]
    config = {"compute_norms": False, "batchsize": batch_size, "num_epochs": epochs}
    with contextlib.redirect_stdout(sys.stderr):  # its progress dots
        _, _, expdata = train.train(params, fc.batchforward, data, config, update, {"lr": lr, "t": 0}, key,
                                    verbose=False)
    return [float(a) for a in expdata["test_acc"]]


# --------------------------------------------------------------------------- ours


def our_spec(rule, hidden, batch_size, epochs, lr):
    hparams = {"lr": lr, "sigma": SIGMA} if rule == "np" else {"lr": lr}
    return {"paper": "nodepert", "rule": rule, "model": {"arch": "mlp", "hidden": list(hidden), "activation": "relu"},
            "dataset": "fashion_mnist", "hparams": hparams, "seed": 0, "epochs": epochs,
            "batch_size": batch_size, "scale": "cpu"}


def train_ours(arrays, rule, lr, seeds, hidden, epochs, batch_size):
    """Per-seed test accuracy (epoch 0 first) of our runs, the seeds vmapped in one batch."""
    from impls.nodepert.compiled import CompiledBatch
    batch = CompiledBatch(our_spec(rule, hidden, batch_size, epochs, lr), arrays)
    params, states, keys = batch.init(np.asarray(seeds), np.full(len(seeds), lr, np.float32))
    curves = [np.asarray(batch.evaluate(params)["test_acc"])]
    for epoch in range(epochs):
        params, states, _ = batch.train_epoch(params, states, keys, epoch)
        curves.append(np.asarray(batch.evaluate(params)["test_acc"]))
    curves = np.stack(curves, axis=1)
    return {int(s): [float(a) for a in curves[i]] for i, s in enumerate(seeds)}


def one_step_checks(fc, optim, arrays, sizes, seed, lr, head=None) -> dict:
    """One update on the first minibatch from the original's initial weights: see the docstring (1)."""
    from jax import random
    from impls.nodepert import models, rules

    params, key = original_init(fc, sizes, seed)
    step_key, _ = random.split(key)          # train.train splits before every minibatch
    x = arrays["x_train"][:100]
    y = one_hot(arrays["y_train"][:100])
    ours_params = to_ours(params)
    noise_key, _ = random.split(step_key)    # optim.nploss splits once more before its noisy pass
    noise = shared_noise(fc.batchnoisyforward(x, params, noise_key)[2])

    new_np, g_np, _ = optim.npupdate(x, y, params, step_key, {"lr": lr, "t": 0})
    ours_np, _ = rules.estimate_with_noise(ours_params, x, y, noise, SIGMA)
    ref = np_estimate_float64(ours_params, x, y, noise, SIGMA)
    new_sgd, g_sgd, _ = optim.sgdupdate(x, y, params, step_key, {"lr": lr, "t": 0})
    rule = rules.make_rule("sgd", {})
    ours_sgd, _, _ = rule.estimate(ours_params, (), x, y, None)

    def stepped(p, g):  # plain SGD, as both sides apply it
        return [{"w": q["w"] - lr * d["w"], "b": q["b"] - lr * d["b"]} for q, d in zip(p, g)]

    out = {"seed": seed, "lr": lr, "batch": "first 100 training images",
           "np_estimate": agreement(ours_np, g_np),
           "np_new_params": agreement(stepped(ours_params, ours_np), new_np),
           "sgd_gradient": agreement(ours_sgd, g_sgd),
           "sgd_new_params": agreement(stepped(ours_params, ours_sgd), new_sgd),
           "np_vs_sgd_cosine": agreement(ours_np, g_sgd)["cosine"],
           "np_ours_vs_float64": agreement(ours_np, as_pairs(ref)),
           "np_original_vs_float64": agreement([{"w": w, "b": b} for w, b in g_np], as_pairs(ref)),
           "clean_loss": float(models.mean_loss(ours_params, x, y))}
    if head is not None:
        head_fc, head_optim = head
        if head_fc.nodepert_noisescale != SIGMA:
            sys.exit(f"error: HEAD's noise scale is {head_fc.nodepert_noisescale}, expected {SIGMA}")
        _, g_head = head_optim.npupdate(x, y, params, step_key, {"lr": lr, "wd": 0.0})
        ours_scalar, _ = rules.estimate_with_noise(ours_params, x, y, noise, SIGMA, batch_scalar=True)
        out["head_np_vs_ours_np_batch_scalar"] = agreement(ours_scalar, g_head)
        ref_scalar = as_pairs(np_estimate_float64(ours_params, x, y, noise, SIGMA, batch_scalar=True))
        out["head_np_vs_float64_batch_scalar"] = agreement([{"w": w, "b": b} for w, b in g_head], ref_scalar)
        out["ours_np_batch_scalar_vs_float64"] = agreement(ours_scalar, ref_scalar)
        out["head_np_vs_paper_era_np"] = agreement([{"w": w, "b": b} for w, b in g_head], g_np)
        out["float64_batch_scalar_vs_per_example"] = agreement(np_estimate_float64(ours_params, x, y, noise, SIGMA,
                                                                                   batch_scalar=True), as_pairs(ref))
    return out


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--original", type=Path, required=True, help="checkout of countzerozzz/nodepert at de296eb")
    p.add_argument("--head", type=Path, default=None, help="optional checkout at 5e541e1 (2023 HEAD): one-step check only")
    p.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                   help="folder with the four Fashion-MNIST IDX .gz files")
    p.add_argument("--rules", nargs="+", default=["np", "sgd"], choices=["np", "sgd"])
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 1e-2])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--hidden", type=int, nargs="+", default=[500, 500], help="hidden widths (fig_nodepert_lr: 500 500)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--n-train", type=int, default=60000, help="first N training images (file order)")
    p.add_argument("--n-test", type=int, default=10000, help="first N test images (file order)")
    p.add_argument("--skip-training", action="store_true", help="only the one-update checks")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "nodepert_original.json")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be >= 1")
    if len(set(args.seeds)) != len(args.seeds) or len(args.seeds) < 2:
        p.error("--seeds needs at least 2 distinct seeds (a standard error needs a spread on each side)")
    if any(lr <= 0 for lr in args.lrs):
        p.error("--lrs must be positive")
    missing = [f for f in IDX_FILES.values() if not (args.data / f).is_file()]
    if missing:
        sys.exit(f"error: --data {args.data} lacks {', '.join(missing)}")

    fc, optim, train = load_original(args.original.resolve())
    head = load_head(args.head.resolve()) if args.head else None
    import jax

    raw = {k: read_idx(args.data / f) for k, f in IDX_FILES.items()}
    try:
        arrays = prepare_arrays(raw, args.n_train, args.n_test, args.batch_size)
    except ValueError as exc:
        p.error(str(exc))
    sizes = [arrays["x_train"].shape[1], *args.hidden, N_CLASSES]
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "jax": jax.__version__, "backend": jax.default_backend(), "cores": os.cpu_count(),
           "loadavg_before": os.getloadavg(), "argv": sys.argv[1:] if argv is None else argv,
           "settings": {"sizes": sizes, "batch_size": args.batch_size, "epochs": args.epochs,
                        "n_train": args.n_train, "n_test": args.n_test, "seeds": args.seeds,
                        "sigma": SIGMA, "data_mean": arrays["mean"], "data_std": arrays["std"]}}

    t0 = time.perf_counter()
    res["one_step"] = one_step_checks(fc, optim, arrays, sizes, args.seeds[0], args.lrs[-1], head)
    print(json.dumps({k: v for k, v in res["one_step"].items() if not isinstance(v, dict)}
                     | {k: {"max_rel_diff": v["max_rel_diff"], "cosine": v["cosine"]}
                        for k, v in res["one_step"].items() if isinstance(v, dict)}), flush=True)

    if not args.skip_training:
        data = OriginalData(arrays)
        ours, original, wall = {}, {}, {}
        for rule, lr in settings(args.rules, args.lrs):
            t = time.perf_counter()
            ours[(rule, lr)] = train_ours(arrays, rule, lr, args.seeds, args.hidden, args.epochs, args.batch_size)
            t_ours = time.perf_counter() - t
            t = time.perf_counter()
            original[(rule, lr)] = {s: train_original(fc, optim, train, data, rule, lr, s, sizes, args.epochs,
                                                      args.batch_size) for s in args.seeds}
            wall[f"{rule} {lr:g}"] = {"ours_s": round(t_ours, 1), "original_s": round(time.perf_counter() - t, 1)}
            print(f"{rule} lr {lr:g}: ours {t_ours:.0f} s, original {wall[f'{rule} {lr:g}']['original_s']:.0f} s",
                  file=sys.stderr, flush=True)
        summary = summarise(ours, original)
        res["curves"] = [{"rule": r, "lr": lr, "ours": ours[(r, lr)], "original": original[(r, lr)]}
                         for r, lr in ours]
        res["summary"] = summary
        res["wall_s"] = wall
        for s in summary:
            print(f"\n### {s['rule']} lr {s['lr']:g}  (epoch 0: ours {s['epoch0']['ours_mean']:.2f}, "
                  f"original {s['epoch0']['original_mean']:.2f})\n")
            print(markdown(s["rows"], "test acc %"))
    res["total_wall_s"] = round(time.perf_counter() - t0, 1)
    res["loadavg_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
