"""bpfree: ours (impls/bpfree, JAX) against the ORIGINAL code (Pathak's backprop-free-algorithms-vol1,
TensorFlow 2 / Keras 2) on the same Fashion-MNIST data with the same settings (issue 17).

It does not contain or copy the original: the ``original`` side imports ``train.py`` (its ``Model``
with the DFA / DRTP / local-loss ``train_step``), ``dataloader.py`` (its tf.data pipeline: scaler,
cache, shuffle buffer 4096, batching with drop_remainder, augmentation layer) and ``util.py``
(``error_rate``) from a checkout you pass with ``--original`` (commit 9caeb0e, HEAD: augmentation
off, shuffle buffer 4096). Both sides read the same IDX files (``--data``), take the same training
subset (``--n-train``: a seeded stratified draw kept in file order; default all 60,000) and are
scored on the full 10,000-image test set after every epoch (the original's own "validation" drops
the last partial batch; here both sides are evaluated by the same rule, argmax over all 10,000).

Shared setting (recorded in every JSON and checked before comparing): the original's fully
connected net ``--hidden`` (default 500, its smallest architecture) with tanh, no BN, no dropout,
orthogonal W and B (gain 1), zero biases, softmax + categorical cross-entropy, Adam (Keras defaults,
eps 1e-7) at ``--lr`` 1e-4 (the notebook's stage-2 lr), batch ``--batch`` 128 with the last partial
batch dropped, inputs (x − 127.5)/127.5, shuffle buffer ``--shuffle-buffer`` 4096 (the original's)
reshuffled each epoch (ours: ``hparams.shuffle_buffer``; 0: a full reshuffle on both sides, the
original's ``Dataset.shuffle`` given the whole subset as its buffer), no augmentation, ``--epochs``, seeds 0..``--seeds``−1 per side
(the original: ``tf.keras.utils.set_random_seed``; ours: PRNGKey). Seeds are independent draws on
each side, so the comparison is statistical: per epoch, mean ± sd of the test accuracy over seeds
per side, the difference of the means and its standard error (``benchmarks/parity.py``).

Deterministic check (``probe``): the original builds a net ``--probe-hidden`` (default 500-1000-500,
one of its architectures) for each of bp, dfa, drtp and cce, computes ONE update on the first
``--batch`` training images with its own ``train_step`` (the optimiser's ``apply_gradients`` is intercepted, so nothing is
applied) and its ``bp_cosine`` tracker, and saves weights, B matrices, batch and update to an npz.
Ours loads exactly those weights and B, computes its rule's update on the same batch and reports,
per tensor, ‖ours − original‖ / ‖original‖, and the cosine of each hidden kernel's update with the
BP gradient on both sides. These must agree to float32 rounding.

Deterministic check over many steps (``--trajectory-steps K``, default 0 = off): the original
builds the training net ``--hidden`` for each rule (seed 1000), takes ``K`` Adam steps (``--lr``,
Keras defaults) with its own ``train_step`` on the first ``K`` batches of the subset in file order
(no shuffle) and saves its initial weights, B, final weights and test accuracy to
``<out>.trajectory.npz``; ours (``--trajectory`` that npz) starts from exactly those weights and B,
takes the same ``K`` steps (optax Adam, eps 1e-7) on the same batches, and reports per tensor
‖ours − original‖/‖original‖ and both test accuracies. This separates the update dynamics from
everything random (initial draws, data order).

Order and partial results: the original side writes the probe first, then trains seed by seed (every
rule for seed 0, then seed 1, ...) and rewrites its JSON after every run; ours trains rule by rule
(its seeds vectorised) and rewrites its JSON after every rule; it computes the probe first when the
original's npz is already there, else after training (waiting for the npz, so both sides can be
started together; ``--probe-only`` skips training). ``compare`` on a partial result compares the
rules both sides have and names the others (``--probe-result``: take the probe from a probe-only JSON).

The sides need different environments, so one side runs per invocation:

    # the original: TensorFlow venv (tensorflow-cpu, tf_keras, scikit-learn, easydict)
    TF_USE_LEGACY_KERAS=1 nice -n 19 /path/to/tf-venv/bin/python benchmarks/bench_bpfree_original.py \\
        original --original /tmp/bpfree-orig --out out/bpfree_original.json
    # ours: the project venv; --probe is the npz the original side wrote next to its JSON
    nice -n 19 .venv/bin/python benchmarks/bench_bpfree_original.py ours \\
        --probe out/bpfree_original.probe.npz --out out/bpfree_ours.json
    # the comparison (any Python): markdown to stdout, JSON to --out
    python benchmarks/bench_bpfree_original.py compare out/bpfree_ours.json out/bpfree_original.json \\
        --out out/bpfree_parity.json

or all three in one go (``all`` runs the original side under ``--tf-python`` and ours under this
interpreter, as subprocesses): ``nice -n 19 .venv/bin/python benchmarks/bench_bpfree_original.py all
--original /tmp/bpfree-orig --tf-python /path/to/tf-venv/bin/python --outdir out``. The same
training options (``--rules --seeds --epochs --n-train --hidden --lr --batch``) must be given to
both sides; ``compare`` refuses settings that differ.

The original needs ``easydict`` (its hparams module) and scikit-learn (its dataloader); its
``tensorflow_datasets`` import (used only by its EuroSAT loader) is replaced by an empty module
when that package is not installed; keras-tuner is not needed (its tuner is not used).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import platform
import struct
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.parity import compare as parity_compare  # noqa: E402
from benchmarks.parity import markdown  # noqa: E402

IDX_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
RULES = ("bp", "dfa", "drtp", "cce")
N_CLASSES = 10
SHUFFLE_BUFFER = 4096   # the original's dataloader at HEAD (9caeb0e)
PROBE_WAIT_S = 3600      # how long ``ours --probe`` waits for the original side to write its npz
DEFAULT_DATA = Path("/usr/share/datasets/fashion-mnist")
#: the settings both sides must share before their curves are compared
SETTING_KEYS = ("rules", "seeds", "epochs", "n_train", "hidden", "lr", "batch", "shuffle_buffer", "data_sha256",
                "probe_hidden")


# ----------------------------------------------------------------------------- data (pure)

def parse_idx(data: bytes) -> np.ndarray:
    """An IDX file's array (unsigned-byte IDX only: Fashion-MNIST/MNIST images and labels)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError("not an IDX file (its magic number does not start with two zero bytes)")
    if data[2] != 0x08:
        raise ValueError(f"IDX type code 0x{data[2]:02x} is not unsigned byte (0x08)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError("IDX header is truncated")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(dims):
        raise ValueError(f"IDX body holds {body.size} bytes, its header says {math.prod(dims)} ({dims})")
    return body.reshape(dims)


def load_idx_dir(directory: Path) -> dict[str, np.ndarray]:
    """The four arrays from ``directory`` (``<name>.gz`` or ``<name>``)."""
    out = {}
    for key, stem in IDX_FILES.items():
        gz, raw = directory / f"{stem}.gz", directory / stem
        if gz.is_file():
            out[key] = parse_idx(gzip.decompress(gz.read_bytes()))
        elif raw.is_file():
            out[key] = parse_idx(raw.read_bytes())
        else:
            raise FileNotFoundError(f"--data {directory} lacks {stem}(.gz)")
    if len(out["x_train"]) != len(out["y_train"]) or len(out["x_test"]) != len(out["y_test"]):
        raise ValueError(f"--data {directory}: image and label counts differ")
    return out


def stratified_subset(labels: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` examples with each class's share kept (largest remainder), drawn
    without replacement with ``seed``; None or n = len(labels): every index."""
    labels = np.asarray(labels)
    if n is None or n == len(labels):
        return np.arange(len(labels))
    if not 0 < n < len(labels):
        raise ValueError(f"--n-train {n} is outside 1..{len(labels)}")
    from impls.common.datasets import stratified_indices   # the workflow's own stratified draw

    return stratified_indices(labels, n, seed)


def prepared_data(directory: Path, n_train: int | None) -> dict[str, np.ndarray]:
    """Both sides' data: the training subset in file order, the full test set, raw uint8 pixels."""
    arrays = load_idx_dir(directory)
    idx = stratified_subset(arrays["y_train"], n_train)
    return {"x_train": arrays["x_train"][idx], "y_train": arrays["y_train"][idx],
            "x_test": arrays["x_test"], "y_test": arrays["y_test"]}


def data_fingerprint(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()[:16]


def parse_hidden(text: str) -> list[int]:
    """'500-1000-500' -> [500, 1000, 500] (the original's architecture string)."""
    try:
        units = [int(u) for u in text.strip().split("-")]
    except ValueError:
        raise ValueError(f"architecture {text!r} is not dash-separated integers, e.g. 500-1000-500") from None
    if not units or any(u <= 0 for u in units):
        raise ValueError(f"architecture {text!r} needs positive layer widths")
    return units


def settings_from_args(args, data_sha: str) -> dict:
    return {"rules": list(args.rules), "seeds": args.seeds, "epochs": args.epochs, "n_train": args.n_train,
            "hidden": parse_hidden(args.hidden), "lr": args.lr, "batch": args.batch,
            "shuffle_buffer": args.shuffle_buffer or None, "data_sha256": data_sha, "probe_hidden": parse_hidden(args.probe_hidden)}


# ----------------------------------------------------------------------------- comparison (pure)

def settings_mismatch(a: dict, b: dict) -> list[str]:
    """The shared settings whose values differ between two sides' results."""
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in SETTING_KEYS if a.get(k) != b.get(k)]


def curves(result: dict, rule: str, metric: str) -> dict[str, list[float]]:
    """{seed: per-epoch values} of one rule and metric from a side's result JSON."""
    runs = result["runs"].get(rule)
    if not runs:
        raise KeyError(f"the {result['side']} result has no runs of rule {rule!r}")
    return {seed: run[metric] for seed, run in runs.items()}


def relative_error(ours: np.ndarray, original: np.ndarray) -> float:
    """‖ours − original‖ / ‖original‖ (absolute when the original is exactly zero)."""
    ours, original = np.asarray(ours, np.float64), np.asarray(original, np.float64)
    if ours.shape != original.shape:
        raise ValueError(f"shapes differ: {ours.shape} vs {original.shape}")
    norm = np.linalg.norm(original)
    diff = np.linalg.norm(ours - original)
    return float(diff / norm) if norm > 0 else float(diff)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def compare_results(ours: dict, original: dict) -> dict:
    """Per rule: per-epoch parity rows for test accuracy and training error, and the probe."""
    if ours.get("side") != "ours" or original.get("side") != "original":
        raise ValueError("compare needs an 'ours' result and an 'original' result (check the argument order)")
    mismatch = settings_mismatch(ours["settings"], original["settings"])
    if mismatch:
        raise ValueError("the two sides ran different settings: " + "; ".join(mismatch))
    out = {"settings": ours["settings"], "rules": {}, "missing": [],
           "complete": {"ours": ours.get("complete", True), "original": original.get("complete", True)}}
    for rule in ours["settings"]["rules"]:
        if not ours["runs"].get(rule) or not original["runs"].get(rule):   # a partial result (still running)
            out["missing"].append(rule)
            continue
        out["rules"][rule] = {
            "test_acc": parity_compare(curves(ours, rule, "test_acc"), curves(original, rule, "test_acc")),
            "train_error": parity_compare(curves(ours, rule, "train_error"),
                                          curves(original, rule, "train_error"))}
    out["probe"] = ours.get("probe")
    out["trajectory"] = ours.get("trajectory")
    return out


def summary_markdown(comparison: dict) -> str:
    """One row per rule: the last epoch's test accuracy, both sides, difference ± SE, verdict, and how
    many epochs lie outside 2 SE."""
    s = comparison["settings"]
    lines = ["| rule | seeds per side | epochs | ours: test acc % | original: test acc % | ours − original ± SE "
             "| verdict (last epoch) | epochs outside 2 SE |", "|---|---|---|---|---|---|---|---|"]
    for rule, rows in comparison["rules"].items():
        last = rows["test_acc"][-1]
        outside = sum(r["verdict"].startswith("differs") for r in rows["test_acc"])
        lines.append(f"| {rule} | {last['ours_n']} / {last['original_n']} | {s['epochs']} | "
                     f"{last['ours_mean']:.2f} ± {last['ours_sd']:.2f} | "
                     f"{last['original_mean']:.2f} ± {last['original_sd']:.2f} | "
                     f"{last['diff']:+.2f} ± {last['se']:.2f} | {last['verdict']} | "
                     f"{outside} of {len(rows['test_acc'])} |")
    return "\n".join(lines)


def probe_markdown(probe: dict | None) -> str:
    if not probe:
        return "(no probe: run the ours side with --probe)"
    lines = ["| rule | max over tensors of ‖ours − original‖/‖original‖ | bp_cosine per hidden layer: ours "
             "| original (its tracker) |", "|---|---|---|---|"]
    for rule, p in probe["rules"].items():
        fmt = lambda v: " / ".join(f"{c:.5f}" for c in v)  # noqa: E731
        lines.append(f"| {rule} | {max(p['relative_error'].values()):.2e} | {fmt(p['bp_cosine_ours'])} | "
                     f"{fmt(p['bp_cosine_original']) if p['bp_cosine_original'] else '—'} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the original (TF venv)

def load_original(path: Path):
    """The original's modules (train, dataloader, util, hparams) from its checkout."""
    if not (path / "train.py").is_file() or not (path / "projection.py").is_file():
        sys.exit(f"error: --original {path} has no train.py/projection.py; pass a checkout of "
                 "5aurabhpathak/backprop-free-algorithms-vol1 (commit 9caeb0e)")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")   # Keras 2 (tf_keras) under TF >= 2.16
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError:   # the original imports it at module level for its EuroSAT loader only
        sys.modules["tensorflow_datasets"] = types.ModuleType("tensorflow_datasets")
    sys.path.insert(0, str(path))
    import dataloader
    import hparams
    import train
    import util
    return types.SimpleNamespace(train=train, dataloader=dataloader, util=util, hparams=hparams)


class _Arrays:
    """A dataset object for the original's ``get_data`` (it accepts any object with ``load_data``)."""

    def __init__(self, arrays):
        self.arrays = arrays

    def load_data(self):
        a = self.arrays
        return (a["x_train"], a["y_train"]), (a["x_test"], a["y_test"])


def original_config(rule: str, hidden: list[int], batch: int, data, trackers=()):
    from easydict import EasyDict
    c = EasyDict()
    c.problem_type, c.dataset, c.batchsize = "classification", _Arrays(data), batch
    c.arch = "-".join(str(u) for u in hidden)
    c.algorithm, c.activation, c.batchnorm, c.bw_init = rule, "tanh", False, "ortho"
    c.reg_rate, c.use_bias, c.weight_decay, c.scale_data = False, True, 0.0, "standard"
    c.examples_frac, c.trackers, c.histogram_freq = None, list(trackers), 0
    c.init_fw_weight_aligned = False
    c.input_shape, c.output_shape = (batch, 784), (batch, N_CLASSES)
    return c


def run_original(args) -> dict:
    orig = load_original(args.original.resolve())
    import tensorflow as tf
    data = prepared_data(args.data, args.n_train)
    settings = settings_from_args(args, data_fingerprint(data))
    if args.shuffle_buffer != SHUFFLE_BUFFER:
        use_buffer(tf, args.shuffle_buffer or len(data["x_train"]))
    x_test = orig.dataloader.scaler(data["x_test"].reshape(len(data["x_test"]), -1).astype(np.float32), None,
                                    original_config("bp", settings["hidden"], args.batch, data))[0]

    class FullTestAccuracy(tf.keras.callbacks.Callback):
        """Test accuracy (%) over all 10,000 test images after every epoch."""

        def __init__(self):
            super().__init__()
            self.acc = []

        def on_epoch_end(self, epoch, logs=None):
            p = self.model.predict(x_test, batch_size=1000, verbose=0)
            self.acc.append(float(100.0 * np.mean(np.argmax(p, -1) == data["y_test"])))

    probe_path = args.out.with_suffix(".probe.npz")
    original_probe(orig, tf, data, settings, args.batch, probe_path)   # cheap and deterministic: first
    if args.trajectory_steps:
        original_trajectory(orig, tf, data, settings, args, args.out.with_suffix(".trajectory.npz"))
    result = {"side": "original", "settings": settings, "runs": {r: {} for r in settings["rules"]},
              "probe_npz": str(probe_path), "complete": False,
              "versions": {"tensorflow": tf.__version__, "python": platform.python_version()}}
    for seed in range(args.seeds):   # seed-major: a partial result has every rule at n seeds
        for rule in settings["rules"]:
            t0 = time.perf_counter()
            tf.keras.utils.set_random_seed(seed)
            config = original_config(rule, settings["hidden"], args.batch, data)
            model = orig.train.Model(config, name="model")
            model.compile(run_eagerly=False, optimizer=tf.keras.optimizers.Adam(learning_rate=args.lr),
                          loss="categorical_crossentropy", metrics=orig.util.error_rate)
            ds = orig.dataloader.get_dataset(config, training=True)
            cb = FullTestAccuracy()
            hist = model.fit(ds, epochs=args.epochs, callbacks=[cb], verbose=0)
            run = {"test_acc": cb.acc, "train_error": [float(v) for v in hist.history["error_rate"]],
                   "train_loss": [float(v) for v in hist.history["loss"]], "wall_s": round(time.perf_counter() - t0, 1)}
            result["runs"][rule][str(seed)] = run
            write_json(args.out, stamped(result, args))   # kept after every run
            print(json.dumps({"side": "original", "rule": rule, "seed": seed, **run}), flush=True)
    result["complete"] = True
    return result


def use_buffer(tf, size: int) -> None:
    """Make the original's ``Dataset.shuffle(4096, ...)`` use a buffer of ``size`` (its dataloader hard-codes 4096)."""
    shuffle = tf.data.Dataset.shuffle

    def resized(self, buffer_size, *a, **kw):
        return shuffle(self, size, *a, **kw)

    tf.data.Dataset.shuffle = resized


def original_probe(orig, tf, data, settings, batch, path: Path) -> None:
    """One update of each rule on the first ``batch`` training images, nothing applied: weights, B,
    the batch, the update of every kernel and bias the forward pass uses, and the bp_cosine tracker."""
    saved = {}
    xb = data["x_train"][:batch].reshape(batch, -1).astype(np.float32)
    yb = tf.keras.utils.to_categorical(data["y_train"][:batch], N_CLASSES).astype(np.float32)
    for rule in RULES:
        tf.keras.utils.set_random_seed(1000)
        config = original_config(rule, settings["probe_hidden"], batch, data, trackers=("bp_cosine",))
        x = orig.dataloader.scaler(xb, None, config)[0]
        model = orig.train.Model(config, name="model")
        model(x[:1])   # builds W and B
        model.compile(run_eagerly=False, optimizer=tf.keras.optimizers.SGD(learning_rate=1.0),
                      loss="categorical_crossentropy", metrics=orig.util.error_rate)
        # the variables the forward pass uses, in our order (W_1, b_1, ..., W_out, b_out): for non-BP rules
        # the original builds each hidden Dense twice (its Sequential, then its Layer wrapper), so
        # trainable_variables also holds the first build's unused kernels and biases (their gradient is None)
        used = [v for d in used_dense(model, rule, tf) for v in (d.kernel, d.bias)]
        stash = {v.ref(): tf.Variable(tf.zeros_like(v), trainable=False) for v in used}
        seen = tf.Variable(0, trainable=False)

        def capture(grads_and_vars, *a, **kw):
            for g, v in grads_and_vars:
                if v.ref() in stash and g is not None:
                    stash[v.ref()].assign(g)
                    seen.assign_add(1)

        model.optimizer.apply_gradients = tf.autograph.experimental.do_not_convert(capture)
        weights = [v.numpy() for v in used]
        model.train_on_batch(x, yb)
        if int(seen.numpy()) != len(used):
            raise RuntimeError(f"{rule}: {int(seen.numpy())} of the {len(used)} used variables got an update")
        saved[f"{rule}/x"], saved[f"{rule}/y"] = x, yb
        saved[f"{rule}/n_trainable_variables"] = np.array(len(model.trainable_variables))
        for i, (w, v) in enumerate(zip(weights, used)):
            saved[f"{rule}/param{i}"] = w
            saved[f"{rule}/update{i}"] = stash[v.ref()].numpy()
        if rule != "bp":
            for i, lyr in enumerate(model.weighted_layers):
                saved[f"{rule}/B{i}"] = lyr.project.kernel.numpy()
            saved[f"{rule}/bp_cosine"] = np.array([float(lyr.bp_cos_angle_tracker.result())
                                                   for lyr in model.weighted_layers])
    np.savez(path, **saved)


def original_trajectory(orig, tf, data, settings, args, path: Path) -> None:
    """``--trajectory-steps`` Adam steps of each rule on the first batches in file order (module docstring)."""
    batch, steps = args.batch, args.trajectory_steps
    if steps * batch > len(data["x_train"]):
        raise SystemExit(f"error: --trajectory-steps {steps} x --batch {batch} exceeds the {len(data['x_train'])} "
                         "training images")
    saved = {"steps": np.array(steps)}
    for rule in settings["rules"]:
        tf.keras.utils.set_random_seed(1000)
        config = original_config(rule, settings["hidden"], batch, data)
        x = orig.dataloader.scaler(data["x_train"][:steps * batch].reshape(steps * batch, -1).astype(np.float32),
                                   None, config)[0]
        y = tf.keras.utils.to_categorical(data["y_train"][:steps * batch], N_CLASSES).astype(np.float32)
        model = orig.train.Model(config, name="model")
        model(x[:1])
        model.compile(run_eagerly=False, optimizer=tf.keras.optimizers.Adam(learning_rate=args.lr),
                      loss="categorical_crossentropy", metrics=orig.util.error_rate)
        used = [v for d in used_dense(model, rule, tf) for v in (d.kernel, d.bias)]
        for i, v in enumerate(used):
            saved[f"{rule}/init{i}"] = v.numpy()
        if rule != "bp":
            for i, lyr in enumerate(model.weighted_layers):
                saved[f"{rule}/B{i}"] = lyr.project.kernel.numpy()
        for k in range(steps):
            model.train_on_batch(x[k * batch:(k + 1) * batch], y[k * batch:(k + 1) * batch])
        for i, v in enumerate(used):
            saved[f"{rule}/final{i}"] = v.numpy()
        x_test = orig.dataloader.scaler(data["x_test"].reshape(len(data["x_test"]), -1).astype(np.float32),
                                        None, config)[0]
        p = model.predict(x_test, batch_size=1000, verbose=0)
        p = p[-1] if isinstance(p, (list, tuple)) else p   # DFA's model returns (logits, probabilities)
        saved[f"{rule}/test_acc"] = np.array(100.0 * np.mean(np.argmax(p, -1) == data["y_test"]))
    np.savez(path, **saved)


def used_dense(model, rule: str, tf) -> list:
    """The Dense layers the forward pass uses (for non-BP rules the original builds each hidden one twice)."""
    return ([lyr.backend for lyr in model.weighted_layers] + [model.linear] if rule != "bp"
            else [l for l in model.model.layers if isinstance(l, tf.keras.layers.Dense)])


# ----------------------------------------------------------------------------- ours (project venv)

def our_spec(rule: str, settings: dict, hidden: list[int]) -> dict:
    from impls.common import specs
    return specs.validate_spec({
        "paper": "bpfree", "rule": rule, "dataset": "fashion_mnist", "seed": 0, "epochs": settings["epochs"],
        "batch_size": settings["batch"], "scale": "cpu",
        "model": {"arch": "mlp", "hidden": hidden, "activation": "tanh", "feedback_init": "ortho"},
        "hparams": {"lr": settings["lr"], "optimizer": "adam", "shuffle_buffer": settings["shuffle_buffer"]}})


def run_ours(args) -> dict:
    import jax
    from impls.bpfree.compiled import CompiledBatch, scale_inputs
    data = prepared_data(args.data, args.n_train)
    settings = settings_from_args(args, data_fingerprint(data))
    x_train, x_test = scale_inputs(data["x_train"], data["x_test"], "standard", "fashion_mnist")
    arrays = {"x_train": x_train, "y_train": data["y_train"].astype(np.int32), "x_test": x_test,
              "y_test": data["y_test"].astype(np.int32), "n_classes": N_CLASSES, "image_shape": (28, 28)}
    seeds = np.arange(args.seeds)
    result = {"side": "ours", "settings": settings, "runs": {}, "complete": False,
              "versions": {"jax": jax.__version__, "python": platform.python_version()}}
    if args.probe and args.probe.is_file():   # the original's npz is there already: the cheap check first
        result["probe"] = ours_probe(args.probe, settings)
        write_json(args.out, stamped(result, args))
    runs = result["runs"]
    for rule in ([] if args.probe_only else settings["rules"]):
        t0 = time.perf_counter()
        program = CompiledBatch(our_spec(rule, settings, settings["hidden"]), arrays)
        state, keys = program.init(seeds, np.full(len(seeds), args.lr, np.float32))
        test_acc, train_error = [], []
        for epoch in range(args.epochs):
            state, running = program.train_epoch(state, keys, epoch)
            test_acc.append(np.asarray(program.evaluate(state)["test_acc"], np.float64))
            train_error.append(100.0 - np.asarray(running["acc"], np.float64))
        wall = round(time.perf_counter() - t0, 1)
        runs[rule] = {str(s): {"test_acc": [float(a[i]) for a in test_acc],
                               "train_error": [float(e[i]) for e in train_error], "wall_s_all_seeds": wall}
                      for i, s in enumerate(seeds)}
        write_json(args.out, stamped(result, args))
        print(json.dumps({"side": "ours", "rule": rule, "wall_s_all_seeds": wall,
                          "test_acc": {s: r["test_acc"] for s, r in runs[rule].items()}}), flush=True)
    if args.trajectory:
        result["trajectory"] = ours_trajectory(args.trajectory, settings, x_train, data["y_train"], x_test,
                                               data["y_test"])
        write_json(args.out, stamped(result, args))
    if args.probe and "probe" not in result:   # after training, so both sides may start together
        deadline = time.monotonic() + PROBE_WAIT_S
        while not args.probe.is_file() and time.monotonic() < deadline:
            time.sleep(10)
        result["probe"] = ours_probe(args.probe, settings)
    result["complete"] = not args.probe_only
    return result


def ours_trajectory(path: Path, settings: dict, x_train, y_train, x_test, y_test) -> dict:
    """The original's ``--trajectory-steps`` run replayed by ours from its weights and B (module docstring)."""
    import jax
    import jax.numpy as jnp
    import optax
    jax.config.update("jax_default_matmul_precision", "highest")
    from impls.bpfree import models
    from impls.bpfree.rules import make_rule
    from impls.rules.dfa import FeedbackState
    saved, hidden, batch = np.load(path), settings["hidden"], settings["batch"]
    steps = int(saved["steps"])
    cfg = models.Config(784, tuple(hidden), N_CLASSES)
    y_onehot = np.eye(N_CLASSES, dtype=np.float32)[y_train]
    out = {"npz": str(path), "steps": steps, "hidden": hidden, "rules": {}}
    for rule in settings["rules"]:
        if f"{rule}/init0" not in saved:
            continue
        flat = [saved[f"{rule}/init{i}"] for i in range(2 * (len(hidden) + 1))]
        params = {"hidden": [{"w": flat[2 * i], "b": flat[2 * i + 1]} for i in range(len(hidden))],
                  "out": {"w": flat[-2], "b": flat[-1]}}
        model_state = {"bn": []}
        r = make_rule(rule, cfg, model_state)
        rstate = (r.init(params) if rule == "bp" else
                  FeedbackState(B=tuple(jnp.asarray(saved[f"{rule}/B{i}"]) for i in range(len(hidden)))))
        opt = optax.adam(settings["lr"], b1=0.9, b2=0.999, eps=1e-7)   # Keras' Adam defaults

        @jax.jit
        def step(params, opt_state, x, y):
            grads = r.estimate(params, rstate, x, y, None)[0]
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        opt_state = opt.init(params)
        for k in range(steps):
            params, opt_state = step(params, opt_state, x_train[k * batch:(k + 1) * batch],
                                     y_onehot[k * batch:(k + 1) * batch])
        final = [t for layer in params["hidden"] + [params["out"]] for t in (layer["w"], layer["b"])]
        logits = models.apply(params, model_state, x_test, None, cfg, train=False)[0]
        names = [f"{n}.{k}" for n in [f"hidden{i + 1}" for i in range(len(hidden))] + ["out"] for k in ("w", "b")]
        out["rules"][rule] = {
            "relative_error": {n: relative_error(np.asarray(o), saved[f"{rule}/final{i}"])
                               for i, (n, o) in enumerate(zip(names, final))},
            "relative_change": {n: relative_error(saved[f"{rule}/final{i}"], saved[f"{rule}/init{i}"])
                                for i, n in enumerate(names) if n.endswith(".w")},
            "test_acc_ours": float(100.0 * np.mean(np.argmax(np.asarray(logits), -1) == y_test)),
            "test_acc_original": float(saved[f"{rule}/test_acc"])}
    return out


def trajectory_markdown(trajectory: dict | None) -> str:
    if not trajectory:
        return "(no trajectory: run the original with --trajectory-steps K and ours with --trajectory)"
    lines = [f"{trajectory['steps']} Adam steps from the original's weights and B on the same batches "
             f"(hidden {trajectory['hidden']}):", "",
             "| rule | max over tensors of ‖ours − original‖/‖original‖ | kernels' change from init (original) "
             "| test acc % ours | original |", "|---|---|---|---|---|"]
    for rule, t in trajectory["rules"].items():
        change = " / ".join(f"{v:.3f}" for v in t["relative_change"].values())
        lines.append(f"| {rule} | {max(t['relative_error'].values()):.2e} | {change} | {t['test_acc_ours']:.2f} | "
                     f"{t['test_acc_original']:.2f} |")
    return "\n".join(lines)


def ours_probe(path: Path, settings: dict) -> dict:
    """Our update on the original's weights, B and batch against the original's update (module docstring)."""
    import jax
    jax.config.update("jax_default_matmul_precision", "highest")
    from impls.bpfree import models
    from impls.bpfree.rules import make_rule
    from impls.rules.dfa import FeedbackState
    saved = np.load(path)
    hidden = settings["probe_hidden"]
    cfg = models.Config(784, tuple(hidden), N_CLASSES)
    n_params = 2 * (len(hidden) + 1)
    out = {"npz": str(path), "hidden": hidden, "rules": {}}
    for rule in RULES:
        flat = [saved[f"{rule}/param{i}"] for i in range(n_params)]
        params = {"hidden": [{"w": flat[2 * i], "b": flat[2 * i + 1]} for i in range(len(hidden))],
                  "out": {"w": flat[-2], "b": flat[-1]}}
        x, y = saved[f"{rule}/x"], saved[f"{rule}/y"]
        state = {"bn": []}
        r = make_rule(rule, cfg, state)
        rstate = (r.init(params) if rule == "bp" else
                  FeedbackState(B=tuple(saved[f"{rule}/B{i}"] for i in range(len(hidden)))))
        grads = r.estimate(params, rstate, x, y, None)[0]
        true = jax.grad(lambda p: models.loss(models.apply(p, state, x, None, cfg, train=True)[0], y, cfg))(params)
        ours_flat = [t for layer in grads["hidden"] + [grads["out"]] for t in (layer["w"], layer["b"])]
        names = [f"{n}.{k}" for n in [f"hidden{i + 1}" for i in range(len(hidden))] + ["out"] for k in ("w", "b")]
        rel = {n: relative_error(o, saved[f"{rule}/update{i}"]) for i, (n, o) in enumerate(zip(names, ours_flat))}
        out["rules"][rule] = {
            "relative_error": rel,
            "bp_cosine_ours": [cosine(g["w"], t["w"]) for g, t in zip(grads["hidden"], true["hidden"])],
            "bp_cosine_original": ([float(c) for c in saved[f"{rule}/bp_cosine"]] if rule != "bp" else [])}
    return out


# ----------------------------------------------------------------------------- command line

def add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the four Fashion-MNIST IDX files")
    p.add_argument("--rules", nargs="+", default=["bp", "dfa", "drtp"], choices=RULES)
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 on each side (>= 2 for a standard error)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--n-train", type=int, default=None, help="stratified training subset (default: all 60,000)")
    p.add_argument("--hidden", default="500", help="hidden widths in the original's notation, e.g. 500-500")
    p.add_argument("--probe-hidden", default="500-1000-500", help="the probe net's hidden widths")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--shuffle-buffer", type=int, default=SHUFFLE_BUFFER,
                   help="shuffle buffer of both sides (the original's is 4096); 0: a full reshuffle every epoch")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--trajectory-steps", type=int, default=0,
                   help="original side: also K Adam steps in file order from seed 1000 (<out>.trajectory.npz)")
    p.add_argument("--out", type=Path, required=True, help="result JSON")


def check_training_options(p: argparse.ArgumentParser, args) -> None:
    if args.seeds < 1 or args.epochs < 1 or args.batch < 1 or args.lr <= 0 or args.shuffle_buffer < 0:
        p.error("--seeds, --epochs and --batch must be >= 1, --lr > 0 and --shuffle-buffer >= 0")
    if args.trajectory_steps < 0:
        p.error("--trajectory-steps must be >= 0")
    if getattr(args, "trajectory", None) and not args.trajectory.is_file():
        p.error(f"--trajectory {args.trajectory} is not a file")
    for flag in ("hidden", "probe_hidden"):
        try:
            parse_hidden(getattr(args, flag))
        except ValueError as err:
            p.error(f"--{flag.replace('_', '-')}: {err}")
    if not args.data.is_dir():
        p.error(f"--data {args.data} is not a folder")


def stamped(result: dict, args) -> dict:
    """``result`` with the command, date, host and load average (1/5/15 min) at start and now."""
    return {**result, "wall_s": round(time.perf_counter() - args.t0, 1), "command": " ".join(sys.argv),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": platform.node(),
            "load_avg_start": args.load0, "load_avg_now": [round(v, 2) for v in os.getloadavg()]}


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def report(comparison: dict) -> str:
    parts = ["## Last epoch", summary_markdown(comparison)]
    for rule, rows in comparison["rules"].items():
        parts += [f"## {rule}: per epoch", markdown(rows["test_acc"], "test acc %"), "",
                  markdown(rows["train_error"], "train error %")]
    if comparison["missing"]:
        parts.append(f"Not compared (no runs yet on one side): {', '.join(comparison['missing'])}")
    parts += ["## Probe: one update on identical weights, B and batch", probe_markdown(comparison["probe"])]
    if comparison.get("trajectory"):
        parts += ["## Trajectory: many updates on identical weights, B and batches",
                  trajectory_markdown(comparison["trajectory"])]
    return "\n\n".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    po = sub.add_parser("original", help="train the original (TensorFlow venv)")
    po.add_argument("--original", type=Path, required=True, help="checkout of backprop-free-algorithms-vol1")
    add_training_options(po)
    pr = sub.add_parser("ours", help="train ours (project venv)")
    pr.add_argument("--probe", type=Path, default=None, help="the original side's .probe.npz")
    pr.add_argument("--probe-only", action="store_true",
                    help="only the deterministic checks (no training; needs --probe or --trajectory)")
    pr.add_argument("--trajectory", type=Path, default=None,
                    help="the original side's .trajectory.npz: replay its K steps from its weights and B")
    add_training_options(pr)
    pc = sub.add_parser("compare", help="compare two result JSONs")
    pc.add_argument("ours", type=Path)
    pc.add_argument("original_result", type=Path)
    pc.add_argument("--probe-result", type=Path, default=None,
                    help="an 'ours --probe-only' JSON whose probe replaces the one in OURS")
    pc.add_argument("--out", type=Path, default=None)
    pa = sub.add_parser("all", help="original (subprocess under --tf-python), ours, compare")
    pa.add_argument("--original", type=Path, required=True)
    pa.add_argument("--tf-python", required=True, help="python of the TensorFlow venv")
    pa.add_argument("--outdir", type=Path, required=True)
    add_training_options(pa)
    args = p.parse_args(argv)

    if args.command == "compare":
        comparison = compare_results(json.loads(args.ours.read_text()), json.loads(args.original_result.read_text()))
        if args.probe_result:
            comparison["probe"] = json.loads(args.probe_result.read_text())["probe"]
        text = report(comparison)
        print(text)
        if args.out:
            write_json(args.out, {**comparison, "markdown": text})
        return 0

    check_training_options({"original": po, "ours": pr, "all": pa}[args.command], args)
    if getattr(args, "probe_only", False) and not (args.probe or args.trajectory):
        pr.error("--probe-only needs --probe or --trajectory")
    if args.command == "all":
        common = ["--data", str(args.data), "--rules", *args.rules, "--seeds", str(args.seeds), "--epochs",
                  str(args.epochs), "--hidden", args.hidden, "--probe-hidden", args.probe_hidden, "--lr", str(args.lr),
                  "--batch", str(args.batch), "--shuffle-buffer", str(args.shuffle_buffer)] + (["--n-train", str(args.n_train)] if args.n_train else [])
        orig_json, ours_json = args.outdir / "bpfree_original.json", args.outdir / "bpfree_ours.json"
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
        subprocess.run([args.tf_python, __file__, "original", "--original", str(args.original), *common,
                        "--out", str(orig_json)], check=True, env=env)
        subprocess.run([sys.executable, __file__, "ours", "--probe", str(orig_json.with_suffix(".probe.npz")),
                        *common, "--out", str(ours_json)], check=True)
        return main(["compare", str(ours_json), str(orig_json), "--out", str(args.outdir / "bpfree_parity.json")])

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.t0, args.load0 = time.perf_counter(), [round(v, 2) for v in os.getloadavg()]
    result = run_original(args) if args.command == "original" else run_ours(args)
    write_json(args.out, stamped(result, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
