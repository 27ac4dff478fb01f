"""Ours (impls/pepita, PyTorch) against the ORIGINAL PEPITA code (numpy, one example at a time) on the same
Fashion-MNIST data: test accuracy after every epoch over seeds, the alignment angle and ‖W_1‖_F, and a
deterministic one-batch check of the update rule.

It does not contain or copy the original: it imports ``functions.py`` (and its ``utils.py``) from a checkout
of GiorgiaD/PEPITA (commit 3fe03d8) that you pass with ``--original``, builds the network as its ``main.py``
does for the README command (``--learn_type ERIN --sample_passes 2 --update_type mom --w_init he_uniform
--build auto --start_size 1024 --n_hlayers 1 --act_hidden relu --act_out softmax``, dropout 0.9, batch 64,
η decayed at epochs 60 and 90, the test set as its per-epoch "validation") and calls its ``train`` method;
``np.random.seed(seed)`` before the network is built is the only thing added (the original seeds nothing).
Both sides read the same images: the four IDX files under ``--data`` are cached once with our
``impls.common.datasets.prepare_dataset`` (in a temporary folder), the first ``--n-train`` training images
are used by both, pixels/255, and the full 10,000-image test set is evaluated after every epoch.

Ours trains the same 784-1024-10 net, He-uniform init, F = U(±√(6/784))·0.05, momentum 0.9 with η inside
the velocity, shared dropout mask, and the original's ``main.py`` semantics that are options of ours
(``double_mask: true``, ``carry_remainder: true``, decays at [60, 90]); ``--ours-set KEY=VALUE`` adds hparams,
e.g. ``shuffle=compose dtype=float64`` (the original's fixed-permutation shuffle and float64 arithmetic).
Seeds are independent on the two sides (different generators), so the comparison is statistical: per
epoch mean ± sd per side, the difference of means and its standard error (``benchmarks/parity.py``).
The original shuffles with ``sklearn.utils.shuffle(..., random_state=0)``, so its data order is the same
for every seed; ours draws its order from each seed (``--original-order`` with ``shuffle=compose``: every
run of ours visits the data in the original's order instead, a diagnostic for that difference).

The one-batch check is exact: the original net (seed 0, dropout off, no shuffling) takes ``--check-steps``
updates on the first examples; ours starts from the original's initial W_1, W_2 and F in float64 and
applies its own PEPITA step (``impls.pepita.rules``) to the same batches; the weight changes must agree to
rounding. Ours' angle between F and (W_2 W_1)ᵀ and ‖W_1‖_F are also computed on the original's final weights
and set beside the values the original logged.

Needs the main environment (numpy, torch, scipy, scikit-learn, matplotlib, which the original imports):

    git clone https://github.com/GiorgiaD/PEPITA /tmp/PEPITA && git -C /tmp/PEPITA checkout 3fe03d8
    python benchmarks/bench_pepita_original.py --original /tmp/PEPITA --seeds 0 1 2 --epochs 5 \\
        --n-train 10000 --lr 0.1 --out pepita_parity.json
    # ours again with the original's shuffle and precision, reusing the original's runs from that file:
    python benchmarks/bench_pepita_original.py --original /tmp/PEPITA --reuse-original pepita_parity.json \\
        --ours-set shuffle=compose dtype=float64 --out pepita_parity_matched.json

The original costs ≈2 ms per training example on one core (one BLAS thread, as its ``main.py`` sets):
≈25 s per 10,000-example epoch with its test pass; the seeds run one after another.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # the original's main.py runs numpy on one thread
os.environ.setdefault("MPLBACKEND", "Agg")  # the original imports pyplot

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.parity import compare, markdown  # noqa: E402

IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
HIDDEN, N_CLASSES, DECAY_EPOCHS = 1024, 10, [60, 90]
#: the original's main.py semantics that ours has as options (always on here)
OURS_MATCHED = {"double_mask": True, "carry_remainder": True, "decay_epochs": DECAY_EPOCHS}
#: settings both sides must share for --reuse-original to accept an earlier file
SHARED_SETTINGS = ("seeds", "epochs", "n_train", "lr", "batch_size", "keep", "data")


# ----------------------------------------------------------------------------- pure helpers (tested)
def original_lists(x: np.ndarray, y: np.ndarray, n_classes: int = N_CLASSES):
    """Images (N, ...) uint8 and labels (N,) -> the original's data format: a list of (d, 1) float64
    columns x/255 and a list of (C, 1) one-hot float64 targets (as its ``utils.dataset_fmnist``)."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    flat = x.reshape(len(x), -1).astype(np.float64) / 255.0
    eye = np.eye(n_classes)
    return [row[:, None] for row in flat], [eye[:, [int(label)]] for label in y]


def original_permutation(n: int) -> np.ndarray:
    """The permutation P the original applies to its current order at every epoch: its ``train`` calls
    ``sklearn.utils.shuffle(x_list, target_list, random_state=0)``, i.e. new_list = old_list[P]."""
    from sklearn.utils import shuffle

    return shuffle(np.arange(n), random_state=0)


def parse_sets(items) -> dict:
    """``["shuffle=compose", "F_scale=0.1"]`` -> hparams; numbers and true/false are converted."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--ours-set expects KEY=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[key] = value
    return out


def relabel_from_zero(rows: list[dict]) -> list[dict]:
    """``compare`` counts epochs from 1; curves that start with the value before training start at 0."""
    return [{**r, "epoch": r["epoch"] - 1} for r in rows]


# ----------------------------------------------------------------------------- the original
def load_original(path: Path):
    if not (path / "functions.py").is_file() or not (path / "utils.py").is_file():
        sys.exit(f"error: --original {path} has no functions.py/utils.py; pass a checkout of "
                 "GiorgiaD/PEPITA (commit 3fe03d8)")
    sys.path.insert(0, str(path))
    import functions  # the original's module
    return functions


def build_original(functions, seed: int, batch_size: int):
    """The network of the README command (``general_network`` as main.py builds it), seeded."""
    np.random.seed(seed)
    with contextlib.redirect_stdout(sys.stderr):
        return functions.general_network([784, HIDDEN, N_CLASSES], [functions.relu, functions.softmax],
                                         [functions.step_f, None], "ERIN", batch_size, "mom", "un",
                                         "he_uniform", 2)


def run_original(functions, seed, train, test, args, work: Path) -> dict:
    net = build_original(functions, seed, args.batch_size)
    save = work / f"original_s{seed}"
    save.mkdir()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        # train(x, t, x_test, t_test, epochs, sample_passes, eta, dropout, shuffling, eta_decay, deformation,
        #       test_as_val, zeromean, plots, validation, savepath, r, check_cos_norm), as main.py calls it
        _, _, val_acc = net.train(train[0], train[1], test[0], test[1], args.epochs, 2, args.lr, args.keep, True,
                                  True, False, True, False, False, True, str(save), 0, True)
    seconds = time.perf_counter() - t0
    angles = np.atleast_1d(np.loadtxt(save / "angles.txt")).tolist()
    norms = np.atleast_1d(np.loadtxt(save / "Anorm.txt")).tolist()
    return {"seed": seed, "test_acc": [100.0 * a for a in val_acc], "angle": angles, "w1norm": norms,
            "train_and_eval_s": seconds, "final_metrics_by_ours": ours_alignment(net)}


def ours_alignment(net) -> dict:
    """Ours' angle and ‖W_1‖_F (``impls.pepita.models.alignment``) on an original network's weights."""
    import torch

    from impls.pepita.models import alignment

    angle, norm = alignment([torch.from_numpy(layer.w)[None] for layer in net.layers],
                            torch.from_numpy(net.layers[-1].F)[None])
    return {"angle": float(angle[0]), "w1norm": float(norm[0])}


# ----------------------------------------------------------------------------- ours
def ours_spec(args, seed: int, extra: dict) -> dict:
    from impls.common import specs as speclib

    hparams = {"lr": args.lr, "keep": args.keep, **OURS_MATCHED, **extra}
    return speclib.validate_spec(dict(paper="pepita", rule="pepita", model={"arch": "fc", "hidden": [HIDDEN]},
                                      dataset="fashion_mnist", hparams=hparams, seed=seed, epochs=args.epochs,
                                      batch_size=args.batch_size, scale="cpu", data={"n_train": args.n_train}))


def run_ours(args, extra: dict, datasets_dir: Path) -> dict:
    import torch

    from impls.pepita.stacked import StackedBatch, load_images

    spec = ours_spec(args, args.seeds[0], extra)
    batch = StackedBatch(spec, args.seeds, load_images(spec, datasets_dir), "cpu")
    if args.original_order:  # diagnostic: every run visits the data in the original's order (P shared by all seeds)
        perm = torch.from_numpy(original_permutation(args.n_train))
        batch.base_perm = perm.expand(len(args.seeds), -1).clone()
    curves = {k: [[] for _ in args.seeds] for k in ("test_acc", "angle", "w1norm")}

    def record(stats, with_acc=True):
        for i in range(len(args.seeds)):
            if with_acc:
                curves["test_acc"][i].append(float(stats["test_acc"][i]))
            curves["angle"][i].append(float(stats["weights_angle"][i]))
            curves["w1norm"][i].append(float(stats["weights_w1norm"][i]))

    t0 = time.perf_counter()
    with torch.no_grad():
        record(batch.evaluate(), with_acc=False)  # the original logs angle and norm, not accuracy, before training
        for epoch in range(1, args.epochs + 1):
            batch.train_epoch(epoch)
            record(batch.evaluate())
            print(f"ours epoch {epoch}: test acc {[round(c[-1], 2) for c in curves['test_acc']]}", file=sys.stderr)
    return {"hparams": batch.hp, "dtype": str(batch.dtype), "train_and_eval_s": time.perf_counter() - t0,
            "runs": [{"seed": s, **{k: v[i] for k, v in curves.items()}} for i, s in enumerate(args.seeds)]}


# ----------------------------------------------------------------------------- initialisation
def init_metrics(functions, args, extra: dict) -> dict:
    """Angle and ‖W_1‖_F before training for seeds 0 .. init_seeds − 1 on each side (no data involved):
    a cheap, larger sample of the initial distributions than the training seeds give."""
    import torch

    from impls.pepita.models import alignment
    from impls.pepita.stacked import StackedBatch

    seeds = list(range(args.init_seeds))
    original = [ours_alignment(build_original(functions, s, args.batch_size)) for s in seeds]
    spec = ours_spec(args, 0, extra)
    empty = torch.zeros(1, 1, 28, 28)
    data = {"x_train": empty, "y_train": torch.zeros(1, dtype=torch.int64), "x_test": empty,
            "y_test": torch.zeros(1, dtype=torch.int64), "n_classes": N_CLASSES}
    batch = StackedBatch(spec, seeds, data, "cpu")
    angle, norm = alignment(batch.weights, batch.F)
    ours = {s: [float(a), float(n)] for s, a, n in zip(seeds, angle, norm)}
    rows = {}
    for i, key in enumerate(("angle", "w1norm")):
        rows[key] = relabel_from_zero(compare({s: [v[i]] for s, v in ours.items()},
                                              {s: [o[key]] for s, o in zip(seeds, original)}))[0]
    return {"seeds": seeds, "ours": ours, "original": {s: [o["angle"], o["w1norm"]] for s, o in zip(seeds, original)},
            "rows": rows}


# ----------------------------------------------------------------------------- the one-batch check
def one_batch_check(functions, train, test, args, work: Path, extra: dict) -> dict:
    """The original's first ``check_steps`` updates (dropout off, no shuffling) against ours' PEPITA step
    from the same initial weights and F, in float64."""
    import torch

    from impls.pepita import rules
    from impls.pepita.options import resolved_hparams

    b, steps = args.batch_size, args.check_steps
    n = b * steps
    net = build_original(functions, 0, b)
    w0 = [np.copy(layer.w) for layer in net.layers]
    F = np.copy(net.layers[-1].F)
    save = work / "original_check"
    save.mkdir()
    with contextlib.redirect_stdout(sys.stderr):
        net.train(train[0][:n], train[1][:n], test[0][:10], test[1][:10], 1, 2, args.lr, 1.0, False, True, False,
                  True, False, False, True, str(save), 0, False)
    delta_original = [layer.w - w for layer, w in zip(net.layers, w0)]

    hp = resolved_hparams(ours_spec(args, 0, {**extra, "keep": 1.0}))
    weights = [torch.tensor(w)[None] for w in w0]
    velocities = [torch.zeros_like(w) for w in weights]
    Ft = torch.tensor(F)[None]
    x = torch.tensor(np.concatenate(train[0][:n], axis=1).T)[None]
    t = torch.tensor(np.concatenate(train[1][:n], axis=1).T)[None]
    with torch.no_grad():
        for s in range(steps):
            sl = slice(s * b, (s + 1) * b)
            grads, _ = rules.compute_grads("pepita", "fc", weights, Ft, [], x[:, sl], t[:, sl], None, hp)
            rules.apply_update("eta_inside", weights, velocities, grads, args.lr, hp["momentum"], b)
    delta_ours = [w[0].numpy() - w_init for w, w_init in zip(weights, w0)]
    rel = [float(np.abs(o - r).max() / np.abs(r).max()) for o, r in zip(delta_ours, delta_original)]
    return {"steps": steps, "examples": n, "lr": args.lr, "modulated_product": hp["modulated_product"],
            "max_abs_delta_original": [float(np.abs(r).max()) for r in delta_original],
            "max_rel_difference_of_weight_changes": rel, "agree_to_1e-9": all(r < 1e-9 for r in rel)}


# ----------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--original", type=Path, required=True, help="checkout of GiorgiaD/PEPITA (commit 3fe03d8)")
    p.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                   help="folder with the four Fashion-MNIST IDX .gz files")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--n-train", type=int, default=10000, help="the first N training images (both sides)")
    p.add_argument("--lr", type=float, default=0.1, help="η (the README command's MNIST value; ours' cpu scale)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--keep", type=float, default=0.9, help="dropout keep probability of the hidden units")
    p.add_argument("--ours-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra hparams of ours, e.g. shuffle=compose dtype=float64")
    p.add_argument("--original-order", action="store_true",
                   help="diagnostic (needs --ours-set shuffle=compose): ours' runs all use the original's permutation "
                        "instead of one drawn per seed, so both sides visit the data in the same order")
    p.add_argument("--check-steps", type=int, default=2, help="updates in the one-batch check (0: skip it)")
    p.add_argument("--init-seeds", type=int, default=20,
                   help="seeds per side for the angle and ‖W_1‖_F at initialisation (0: skip)")
    p.add_argument("--reuse-original", type=Path, default=None,
                   help="take the original's runs from an earlier --out file with the same settings")
    p.add_argument("--threads", type=int, default=1, help="torch threads for ours")
    p.add_argument("--out", type=Path, default=None, help="write everything as JSON here")
    args = p.parse_args(argv)
    if len(args.seeds) != len(set(args.seeds)):
        p.error("--seeds must be distinct")
    if args.epochs < 1 or args.batch_size < 1 or not 0 < args.keep <= 1 or args.lr <= 0:
        p.error("--epochs and --batch-size must be >= 1, --keep in (0, 1], --lr > 0")
    if not 1 <= args.n_train <= 60000:
        p.error("--n-train must be in 1..60000")
    try:
        extra = parse_sets(args.ours_set)
    except ValueError as err:
        p.error(str(err))
    missing = [f for f in IDX_FILES if not (args.data / f).is_file()]
    if missing:
        sys.exit(f"error: --data {args.data} lacks {', '.join(missing)}")
    settings = {"seeds": args.seeds, "epochs": args.epochs, "n_train": args.n_train, "lr": args.lr,
                "batch_size": args.batch_size, "keep": args.keep, "data": str(args.data.resolve()),
                "architecture": [784, HIDDEN, N_CLASSES], "n_test": 10000, "decay_epochs": DECAY_EPOCHS}
    reused = None
    if args.reuse_original:
        reused = json.loads(args.reuse_original.read_text())
        differ = [k for k in SHARED_SETTINGS if reused["settings"].get(k) != settings[k]]
        if differ:
            sys.exit(f"error: --reuse-original {args.reuse_original} was run with other {', '.join(differ)}")
    ours_spec(args, args.seeds[0], extra)  # a bad --ours-set fails here, before any training
    if args.original_order and extra.get("shuffle") != "compose":
        p.error("--original-order needs --ours-set shuffle=compose")

    import torch

    from impls.common import datasets

    torch.set_num_threads(args.threads)
    functions = load_original(args.original.resolve())
    work = Path(tempfile.mkdtemp(prefix="pepita-parity-"))
    datasets.prepare_dataset("fashion_mnist", work / "fashion_mnist.npz", fashion_mnist_dir=args.data, download=False)
    ds = datasets.load_dataset(work / "fashion_mnist.npz")
    train = original_lists(ds.x_train[:args.n_train], ds.y_train[:args.n_train])
    test = original_lists(ds.x_test, ds.y_test)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load_before = os.getloadavg()

    check = one_batch_check(functions, train, test, args, work, extra) if args.check_steps else None
    if check:
        print(f"one-batch check: {json.dumps(check)}", file=sys.stderr)
    init = init_metrics(functions, args, extra) if args.init_seeds else None
    if reused:
        original = reused["original"]
    else:
        original = {"runs": []}
        for seed in args.seeds:
            run = run_original(functions, seed, train, test, args, work)
            original["runs"].append(run)
            print(f"original seed {seed}: test acc {[round(a, 2) for a in run['test_acc']]} "
                  f"({run['train_and_eval_s']:.0f} s)", file=sys.stderr)
    ours = run_ours(args, extra, work)

    o_runs, r_runs = ours["runs"], original["runs"]
    comparisons = {
        "test_acc": compare({r["seed"]: r["test_acc"] for r in o_runs}, {r["seed"]: r["test_acc"] for r in r_runs}),
        "angle": relabel_from_zero(compare({r["seed"]: r["angle"] for r in o_runs},
                                           {r["seed"]: r["angle"] for r in r_runs})),
        "w1norm": relabel_from_zero(compare({r["seed"]: r["w1norm"] for r in o_runs},
                                            {r["seed"]: r["w1norm"] for r in r_runs})),
    }
    metric_check = [{"seed": r["seed"], "original_logged": [r["angle"][-1], r["w1norm"][-1]],
                     "ours_on_original_weights": [r["final_metrics_by_ours"]["angle"],
                                                  r["final_metrics_by_ours"]["w1norm"]]} for r in r_runs]
    record = {"settings": settings, "ours_extra_hparams": extra, "ours_original_order": args.original_order, "ours_hparams": ours["hparams"],
              "ours_dtype": ours["dtype"], "started_utc": started, "load_average_before": load_before,
              "load_average_after": os.getloadavg(), "original_reused_from": str(args.reuse_original or ""),
              "ours_seconds": ours["train_and_eval_s"], "one_batch_check": check, "final_metric_check": metric_check,
              "init": init,
              "original": original, "ours": {"runs": o_runs}, "comparisons": comparisons}
    print(f"\nsettings: {json.dumps(settings)}\nours' extra hparams: {json.dumps(extra)}"
          f"{' (data order: the original permutation)' if args.original_order else ''}\n")
    for key, label in (("test_acc", "test acc %"), ("angle", "angle(F, (W2W1)ᵀ) °"), ("w1norm", "‖W1‖_F")):
        print(markdown(comparisons[key], label) + "\n")
    if init:
        print(f"at initialisation, {args.init_seeds} seeds per side (epoch 0):")
        for key, label in (("angle", "angle °"), ("w1norm", "‖W1‖_F")):
            print(markdown([init["rows"][key]], label))
    if check:
        print(f"\none-batch check ({check['steps']} updates of {args.batch_size}, float64, dropout off): max relative "
              f"difference of the weight changes W1 {check['max_rel_difference_of_weight_changes'][0]:.1e}, "
              f"W2 {check['max_rel_difference_of_weight_changes'][1]:.1e}")
    if args.out:
        args.out.write_text(json.dumps(record, indent=1, default=float))
    return record


if __name__ == "__main__":
    main()
