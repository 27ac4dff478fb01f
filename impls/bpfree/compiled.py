"""The compiled pieces of a batch of bpfree runs (papers/bpfree/README.md, "Network" and "Metrics and trackers"):
data, optimiser, one epoch, evaluation.

Caller: ``impls.bpfree.train`` (the program the common driver trains), ``impls.bpfree.bench`` and
the tests.

All runs of a batch share rule, model, dataset, epochs and batch size; they differ in seed and
learning rate (``batch_over``). One process trains them together:

- parameters, optimiser/rule/BN states and keys are stacked along a leading run axis and one
  training step is ``jax.vmap``-ed over it (conv nets on CPU: a ``lax.map`` over the runs,
  ``impls.common.jax_state.over_runs``, since XLA:CPU runs vmap's grouped convs slowly); an epoch is
  one compiled ``lax.scan``;
- data live on the device; every run reshuffles the full training set each epoch with its own
  key (full shuffle, the default, README deviation 1; ``shuffle_buffer``: a tf.data buffer shuffle instead, and
  ``brightness``: per-example random brightness, both in ``impls.bpfree.pipeline``), so a batch
  needs no host sync inside an epoch;
- training error/loss are the running mean over the epoch's minibatches (dropout active, before
  each update: Keras' convention); ``evaluate`` covers the full train and test splits
  (the program uses it for epoch 0 and for the test metrics of every epoch);
- trackers (papers/bpfree/README.md, "Metrics and trackers") are computed every step and averaged over the epoch;
- ``adversarial_eps`` > 0: each update is ½ clean + ½ on the batch's FGSM examples (``impls.bpfree.adversarial``);
- ``with_learning_rates`` sets each run's optimiser learning rate (the program's lr halving).

Seeds: base = PRNGKey(seed); weights fold_in(base, 0) (so every rule starts from the same
weights for a seed), feedback matrices fold_in(base, 1), dropout fold_in(base, 2) per step,
shuffling fold_in(base, 3) per epoch, brightness fold_in(base, 4) per step; a resumed job replays
exactly the same draws.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from impls.bpfree import adversarial, models, options, pipeline
from impls.bpfree.rules import TEST_LOCAL_LOSS_RULES, local_losses, local_losses_per_example, make_rule
from impls.common import datasets, jax_state
from impls.common.jax_state import over_runs, pad_chunks

EVAL_CHUNK = 1000
N_SAMPLES = 8  # reconstruction: test images saved with their reconstructions
#: largest pixel value of each dataset's stored uint8 images (digits are 0..16)
PIXEL_MAX = {"digits": 16.0}

# ----------------------------------------------------------------------------- data

def scale_inputs(x_train: np.ndarray, x_test: np.ndarray, scaler: str, dataset: str):
    """Flattened float32 inputs. standard: 2x/max − 1 ∈ [−1, 1] (Pathak's (x − 127.5)/127.5);
    minmax: x/max ∈ [0, 1]; zscore: global mean/std of the training set; zscore_channel: mean/std
    per colour channel of the training set (grey images: one channel)."""
    if scaler == "zscore":
        return datasets.standardize(x_train, x_test, "global")
    if scaler == "zscore_channel":
        grey = x_train.ndim == 3
        x_train, x_test = (x[..., None] if grey else x for x in (x_train, x_test))
        return tuple(x.reshape(len(x), -1) for x in datasets.standardize(x_train, x_test, "per_channel"))
    top = PIXEL_MAX.get(dataset, 255.0)
    out = []
    for x in (x_train, x_test):
        x = x.reshape(len(x), -1).astype(np.float32) / top
        out.append(2.0 * x - 1.0 if scaler == "standard" else x)
    return tuple(out)


def load_arrays(spec: dict, datasets_dir) -> dict:
    ds = datasets.load_dataset(datasets_dir / f"{spec['dataset']}.npz")
    ds = datasets.subset_for_spec(ds, spec)
    x_train, x_test = scale_inputs(ds.x_train, ds.x_test, options.model_config(spec)["scaler"], spec["dataset"])
    if len(x_train) < spec["batch_size"]:
        raise ValueError(f"batch_size {spec['batch_size']} exceeds the {len(x_train)} training examples")
    return {"x_train": x_train, "y_train": ds.y_train.astype(np.int32), "x_test": x_test,
            "y_test": ds.y_test.astype(np.int32), "n_classes": ds.num_classes,
            "image_shape": tuple(ds.x_train.shape[1:])}


# ----------------------------------------------------------------------------- optimiser, compiled batch

def make_optimizer(hp: dict):
    """The spec's optimiser with its learning rate injected (so it can differ per run)."""
    name = hp["optimizer"]
    if name == "adam":      # Keras Adam defaults; eps 1e-7 (README "Defaults easy to miss")
        return optax.inject_hyperparams(optax.adam)(learning_rate=hp["lr"], b1=0.9, b2=0.999, eps=1e-7)
    if name == "rmsprop":   # Torch7 optim.rmsprop defaults (alpha 0.99, eps 1e-8 outside the sqrt)
        return optax.inject_hyperparams(optax.rmsprop)(learning_rate=hp["lr"], decay=0.99, eps=1e-8,
                                                       eps_in_sqrt=False)
    if name == "nag":       # PyTorch SGD(momentum, nesterov=True)
        return optax.inject_hyperparams(optax.sgd)(learning_rate=hp["lr"], momentum=hp["momentum"], nesterov=True)
    return optax.inject_hyperparams(optax.sgd)(learning_rate=hp["lr"])


def _cos(a, b):
    a, b = a.ravel(), b.ravel()
    return jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))


class CompiledBatch:
    """Compiled pieces of one batch: init, one training epoch, evaluation."""

    def __init__(self, spec: dict, arrays: dict, sequential_runs: bool | None = None):
        """``sequential_runs``: loop over the runs of the batch instead of vmapping them (default: conv nets
        on CPU, ``impls.common.jax_state.sequential_runs``)."""
        self.rule_name = spec["rule"]
        self.hp = options.hparams(spec)
        self.feedback_init = options.model_config(spec)["feedback_init"]
        self.cfg = models.config_from_spec(spec, arrays["x_train"].shape[1], arrays["n_classes"],
                                           arrays.get("image_shape", ()))
        self.recon = self.cfg.task == "reconstruction"
        self.trackers = options.trackers(spec)
        self.n_classes = arrays["n_classes"]
        self.batch_size = spec["batch_size"]
        self.steps_per_epoch = len(arrays["x_train"]) // self.batch_size
        self.x_train = jnp.asarray(arrays["x_train"])
        self.y_train = jnp.asarray(arrays["y_train"])
        self.n_train = len(arrays["x_train"])
        self.eval_sets = {"train": pad_chunks(arrays["x_train"], arrays["y_train"], EVAL_CHUNK),
                          "test": pad_chunks(arrays["x_test"], arrays["y_test"], EVAL_CHUNK)}
        self.x_samples = jnp.asarray(arrays["x_test"][:N_SAMPLES])
        self.optimizer = make_optimizer(self.hp)
        self.scaler = options.model_config(spec)["scaler"]
        self.brightness_range = pipeline.SCALER_RANGE.get(self.scaler)
        self.sequential = (jax_state.sequential_runs(bool(self.cfg.conv)) if sequential_runs is None
                           else bool(sequential_runs))
        self.train_epoch = jax.jit(self._train_epoch, donate_argnums=(0,))
        self.evaluate = jax.jit(self._evaluate)

    def target(self, x, labels):
        return x if self.recon else jax.nn.one_hot(labels, self.n_classes)

    def metric_names(self) -> list[str]:
        names = ["train_loss", "test_loss"]
        if not self.recon:
            names += ["train_acc", "test_acc", "train_error", "test_error"]
        if self.hp["lr_halving"]:
            names.append("train_lr")
        return names + [f"train_{k}" for k in self.tracker_names()] + self.test_tracker_names()

    def test_tracker_names(self) -> list[str]:
        """``test_localloss_l<i>``: ℓ_l/N on the full test set, eval mode (not for DFA: README "Metrics and
        trackers")."""
        if "local_loss" not in self.trackers or self.rule_name not in TEST_LOCAL_LOSS_RULES:
            return []
        return [f"test_localloss_l{i}" for i in range(1, len(self.cfg.hidden) + 1)]

    def tracker_names(self) -> list[str]:
        L = len(self.cfg.hidden)
        hid = [f"l{i}" for i in range(1, L + 1)]
        names = []
        if "bp_cosine" in self.trackers:
            names += [f"bpcosine_{h}" for h in hid]
        if "weight_alignment" in self.trackers:
            names += [f"walign_{h}" for h in hid[1:]] + ["walign_out"]
        if "local_loss" in self.trackers:
            names += [f"localloss_{h}" for h in hid]
        if "gradients" in self.trackers:
            names += [f"{k}_{h}" for h in hid + ["out"] for k in ("gradnorm", "biasgradnorm")]
        if "weights" in self.trackers:
            names += [f"{k}_{h}" for h in hid + ["out"] for k in ("wnorm", "biasnorm")]
        return names

    def init(self, seeds: np.ndarray, lrs: np.ndarray):
        base = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))
        fold = lambda i: jax.vmap(lambda k: jax.random.fold_in(k, i))(base)  # noqa: E731
        params, model_state = jax.vmap(lambda k: models.init(k, self.cfg))(fold(0))
        rule0 = make_rule(self.rule_name, self.cfg, None, self.feedback_init)
        rule_state = jax.vmap(lambda p, k: rule0.init(p, k))(params, fold(1))
        if self.cfg.weight_init == "aligned":
            params = jax.vmap(aligned_weights)(params, rule_state.B)
        opt_state = jax.vmap(lambda p, lr: make_optimizer({**self.hp, "lr": lr}).init(p))(
            params, jnp.asarray(lrs, jnp.float32))
        state = {"params": params, "opt": opt_state, "rule": rule_state, "model": model_state}
        return state, {"dropout": fold(2), "shuffle": fold(3), "augment": fold(4)}

    # --- one run, one step -----------------------------------------------------------------
    def _step(self, params, opt_state, rule_state, model_state, key, x, labels):
        cfg, hp = self.cfg, self.hp
        y = self.target(x, labels)
        rule = make_rule(self.rule_name, cfg, model_state, self.feedback_init)
        grads, rule_state, aux = rule.estimate(params, rule_state, x, y, key)
        if hp["adversarial_eps"]:   # Nøkland's adversarial training: ½ clean + ½ FGSM update
            x_adv = adversarial.fgsm(params, model_state, x, y, key, cfg, hp["adversarial_eps"], self.scaler)
            adv_key = jax.random.fold_in(key, adversarial.ADV_KEY)
            adv_grads, _, _ = rule.estimate(params, rule_state, x_adv, y, adv_key)
            grads = adversarial.mix(grads, adv_grads)
        if hp["wd"]:   # wd·Σ½‖W‖² over kernels, as the original
            grads = _add_wd(grads, params, hp["wd"], cfg.conv_trained)
        out = {"loss": aux["loss"]}
        if not self.recon:
            out["acc"] = 100.0 * jnp.mean(jnp.argmax(aux["z"], -1) == labels)
        out.update(self._trackers(params, grads, rule_state, model_state, key, x, y, aux))
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, rule_state, aux["model_state"], out

    def _trackers(self, params, grads, rule_state, model_state, key, x, y, aux) -> dict:
        cfg, names, out = self.cfg, self.trackers, {}
        if not names:
            return out
        B = tuple(rule_state.B)
        hid = [f"l{i}" for i in range(1, len(cfg.hidden) + 1)]
        if "bp_cosine" in names:   # one extra exact backward pass, same dropout masks and BN batch stats
            true = jax.grad(lambda p: models.loss(
                models.apply(p, model_state, x, key, cfg, train=True, mode="bp")[0], y, cfg))(params)
            if self.hp["wd"]:
                true = _add_wd(true, params, self.hp["wd"], cfg.conv_trained)
            for h, g, t in zip(hid, grads["hidden"], true["hidden"]):
                out[f"bpcosine_{h}"] = _cos(g["w"], t["w"])
        if "weight_alignment" in names:   # corrected definitions (README "Metrics and trackers")
            for l in range(1, len(cfg.hidden)):
                out[f"walign_{hid[l]}"] = _cos(params["hidden"][l]["w"], B[l - 1] @ B[l].T)
            out["walign_out"] = _cos(params["out"]["w"], B[-1])
        if "local_loss" in names:
            for h, v in zip(hid, local_losses(self.rule_name, cfg, aux["hs"], aux["z"], y, B)):
                out[f"localloss_{h}"] = v
        layers = list(zip(hid + ["out"], grads["hidden"] + [grads["out"]], params["hidden"] + [params["out"]]))
        if "gradients" in names:
            for h, g, _ in layers:
                out[f"gradnorm_{h}"], out[f"biasgradnorm_{h}"] = jnp.linalg.norm(g["w"]), jnp.linalg.norm(g["b"])
        if "weights" in names:
            for h, _, p in layers:
                out[f"wnorm_{h}"], out[f"biasnorm_{h}"] = jnp.linalg.norm(p["w"]), jnp.linalg.norm(p["b"])
        return out

    # --- one epoch, every run ----------------------------------------------------------------
    def _train_epoch(self, state, keys, epoch):
        used = self.steps_per_epoch * self.batch_size

        buffer = self.hp["shuffle_buffer"]

        def order(k):
            k = jax.random.fold_in(k, epoch)
            full = (jax.random.permutation(k, self.n_train) if buffer is None
                    else pipeline.buffer_shuffle_order(k, self.n_train, buffer))
            return full[:used].reshape(self.steps_per_epoch, self.batch_size)

        idx = jnp.swapaxes(jax.vmap(order)(keys["shuffle"]), 0, 1)      # (steps, runs, batch)
        step = over_runs(self._step, (0,) * 7, self.sequential)

        def body(carry, inputs):
            t, ix = inputs
            drop = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys["dropout"])
            x = self.x_train[ix]
            if self.hp["brightness"]:
                aug = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys["augment"])
                x = jax.vmap(lambda k, xb: pipeline.random_brightness(
                    k, xb, self.hp["brightness"], self.brightness_range))(aug, x)
            p, o, r, m, out = step(carry["params"], carry["opt"], carry["rule"], carry["model"], drop,
                                   x, self.y_train[ix])
            return {"params": p, "opt": o, "rule": r, "model": m}, out

        ts = epoch * self.steps_per_epoch + jnp.arange(self.steps_per_epoch, dtype=jnp.uint32)
        state, outs = jax.lax.scan(body, state, (ts, idx))
        return state, jax.tree_util.tree_map(lambda v: v.mean(axis=0), outs)

    def _evaluate(self, state):
        cfg, out = self.cfg, {}
        for split, (xc, yc, mask, n) in self.eval_sets.items():
            def chunk_stats(args):
                x, labels, m = args
                forward = over_runs(lambda p, s: models.apply(p, s, x, None, cfg, train=False)[0], (0, 0),
                                    self.sequential)
                z = forward(state["params"], state["model"])
                loss = models.per_example_loss(z, self.target(x, labels)[None], cfg)
                correct = (jnp.argmax(z, -1) == labels[None]).astype(jnp.float32)
                return (correct * m).sum(-1), (loss * m).sum(-1)

            correct, loss = jax.lax.map(chunk_stats, (xc, yc, mask))
            out[f"{split}_loss"] = loss.sum(0) / n
            if split == "test" and self.test_tracker_names():
                out.update(self._test_local_losses(state, xc, yc, mask, n))
            if not self.recon:
                out[f"{split}_acc"] = 100.0 * correct.sum(0) / n
                out[f"{split}_error"] = 100.0 - out[f"{split}_acc"]
        return out

    def _test_local_losses(self, state, xc, yc, mask, n) -> dict:
        """Σ_n ℓ_{l,n} / n over the test set, with the eval-mode h_l (BN running statistics, no dropout)."""
        cfg = self.cfg

        def chunk_sums(args):
            x, labels, m = args

            def one_run(p, s, B):
                _, hs, _ = models.apply(p, s, x, None, cfg, train=False)
                per = local_losses_per_example(self.rule_name, cfg, hs, self.target(x, labels), B)
                return jnp.stack([(v * m).sum() for v in per])

            return over_runs(one_run, (0, 0, 0), self.sequential)(state["params"], state["model"],
                                                                   tuple(state["rule"].B))

        sums = jax.lax.map(chunk_sums, (xc, yc, mask)).sum(0) / n          # (runs, layers)
        return {name: sums[:, i] for i, name in enumerate(self.test_tracker_names())}

    def reconstructions(self, state) -> np.ndarray:
        z = jax.vmap(lambda p, s: models.apply(p, s, self.x_samples, None, self.cfg, train=False)[0])(
            state["params"], state["model"])
        return np.asarray(models.output_fn(self.cfg)(z))


def with_learning_rates(state, lrs: np.ndarray):
    """``state`` with each run's optimiser learning rate set to ``lrs`` (R,)."""
    opt = state["opt"]
    hyper = {**opt.hyperparams, "learning_rate": jnp.asarray(lrs, opt.hyperparams["learning_rate"].dtype)}
    return {**state, "opt": opt._replace(hyperparams=hyper)}


def aligned_weights(params, B):
    """Pathak's ``aligned_init`` (papers/bpfree/README.md, "Local learning signals"): W_l = B_{l−1} B_lᵀ for l ≥ 2 and
    W_out = B_L, so the forward weights start aligned with the fixed matrices (weight alignment 1); W_1 and biases
    keep their initialisation."""
    hidden = [dict(layer) for layer in params["hidden"]]
    for l in range(1, len(hidden)):
        hidden[l]["w"] = B[l - 1] @ B[l].T
    return {"hidden": hidden, "out": {**params["out"], "w": B[-1]}}


def _add_wd(grads, params, wd, conv_trained: bool = True):
    """Adds wd·W to every kernel's update (frozen conv kernels excepted)."""
    def add(g, p):
        return {**g, "w": g["w"] + wd * p["w"]}
    out = {"hidden": [add(g, p) for g, p in zip(grads["hidden"], params["hidden"])],
           "out": add(grads["out"], params["out"])}
    if "conv" in grads:
        out["conv"] = ([add(g, p) for g, p in zip(grads["conv"], params["conv"])] if conv_trained
                       else grads["conv"])
    return out
