"""The arena program the common driver trains (impls.common.driver): the runs of one arena rule, one epoch at a time.

A batch holds one rule (``impls.arena.contenders``) at several learning rates and seeds; the rule's
framework decides the trainer: :class:`JaxTrainer` (every run vmapped, an epoch one compiled
``lax.scan``) or :class:`TorchTrainer` (every run stacked along a leading axis, batched matmuls).
Both do the same thing:

- net: the MLP of ``model.hidden``, or with ``model.arch: conv`` the conv task's net
  (``impls.arena.nets.ConvNet``, JAX contenders only: ``impls.arena.jax_conv_rules``) on the inputs as images;
- data: ``impls.arena.data`` (validation split carved from the training set, inputs standardised
  with the training part's statistics); epoch e of a run of seed s visits the training examples in
  ``data.epoch_order(s, e, n)``, minibatches of ``batch_size``, the last partial one dropped;
- update: θ ← θ − lr·u with u the rule's pseudo-gradient g (``optimizer: sgd``) or Adam's step on g
  (``optimizer: adam``, β = 0.9, 0.999, ε = 1e-8), the same for every rule;
- metrics per epoch: ``train_loss`` (the running mean of the rule's minibatch loss), ``val_acc`` and
  ``test_acc`` (%), ``time_cpu_s`` and ``time_wall_s`` (the training epoch's CPU and wall-clock seconds
  in this process, divided by the batch's runs), and at the epochs of ``options.cosine_epochs`` (early, mid, late, and epoch 0)
  ``probe_cos_bp``: the cosine between the rule's update g of the forward weights and the exact
  gradient of the same loss, on a fixed probe batch (the first ``probe`` training examples), NaN at
  the other epochs;
- ``train.json`` records ``step_memory_mb``: the peak memory of one training step of one run, measured
  by the framework (JAX: XLA's compiled memory statistics of the step; PyTorch: the bytes of every
  tensor alive during the step, ``LiveTensorBytes``);
- a run whose training loss turns non-finite is recorded as diverged.
"""
from __future__ import annotations

import time

import numpy as np

from impls.arena import data as arena_data
from impls.arena import nets, options
from impls.arena.contenders import framework_of
from impls.common.driver import BatchProgram, Progress

METRICS = ["train_loss", "val_acc", "test_acc", "probe_cos_bp", "time_cpu_s", "time_wall_s"]
ADAM = (0.9, 0.999, 1.0e-8)


def _one_rule(specs) -> str:
    rules = {s["rule"] for s in specs}
    if len(rules) != 1:
        raise ValueError(f"an arena batch trains one rule; this one holds {sorted(rules)}")
    return rules.pop()


class Program(BatchProgram):
    """``make_program(job, options)`` for the driver: the rule's trainer behind the driver's hooks."""

    metric_names = METRICS
    log_metric = "val_acc"
    divergence_losses = ("train_loss",)

    def __init__(self, job, train_options):
        specs = list(job.specs)
        self.rule = _one_rule(specs)
        spec = specs[0]
        self.hp, self.model = options.resolved_hparams(spec), options.resolved_model(spec)
        self.data = arena_data.load(spec, train_options.datasets_dir)
        self.net = None   # the conv task's net (model.arch: conv), else the MLP of layer sizes ``sizes``
        if self.model["arch"] == "conv":
            self.data = arena_data.as_images(self.data, f"dataset {spec['dataset']}")
            self.net = nets.ConvNet(tuple(self.data.image_shape), tuple(self.model["channels"]),
                                    tuple(self.model["strides"]), self.data.n_classes)
            self.sizes = self.net.unit_sizes()
        else:
            self.sizes = nets.layer_sizes(self.data.in_dim, self.model["hidden"], self.data.n_classes)
        self.seeds = [int(s["seed"]) for s in specs]
        self.lrs = np.array([float(s["hparams"]["lr"]) for s in specs], np.float32)
        self.batch_size = int(spec["batch_size"])
        self.cos_epochs = options.cosine_epochs(int(spec["epochs"]))
        trainer = JaxTrainer if framework_of(self.rule) == "jax" else TorchTrainer
        self.trainer = trainer(self)
        self.step_memory_mb = self.trainer.step_memory_mb()

    def evaluate(self):
        return {**self.trainer.accuracies(), "probe_cos_bp": self.trainer.cosines()}

    def train_epoch(self, progress: Progress):
        n = len(self.data.x_train)
        order = np.stack([arena_data.epoch_order(s, progress.epoch, n) for s in self.seeds])
        steps = n // self.batch_size
        batches = order[:, :steps * self.batch_size].reshape(len(self.seeds), steps, self.batch_size)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        loss = self.trainer.train_epoch(batches, progress.epoch)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        runs = len(self.seeds)
        out = {"train_loss": loss, **self.trainer.accuracies(),
               "time_cpu_s": np.full(runs, cpu / runs), "time_wall_s": np.full(runs, wall / runs)}
        if progress.epoch in self.cos_epochs:
            out["probe_cos_bp"] = self.trainer.cosines()
        return out

    def state(self):
        return self.trainer.state()

    def load_state(self, state):
        self.trainer.load_state(state)

    def run_files(self, i):
        return {"params.npz": {f"w{l}": w for l, w in enumerate(self.trainer.weights(i))}}

    def device(self):
        return self.trainer.device()

    def train_record(self, i, progress: Progress):
        shapes = {"kernel_shapes": [list(k) for k in self.net.kernel_shapes()]} if self.net else {}
        return {"framework": framework_of(self.rule), "steps_per_epoch": len(self.data.x_train) // self.batch_size,
                "layer_sizes": self.sizes, **shapes, "n_val": int(self.hp["n_val"]),
                "step_memory_mb": self.step_memory_mb}


def _accuracy(predicted, labels) -> float:
    return 100.0 * float(np.mean(np.asarray(predicted) == labels))


class JaxTrainer:
    """The runs of a JAX contender, vmapped (conv nets on CPU: looped, ``impls.common.jax_state.over_runs``);
    one epoch is one compiled ``lax.scan`` over minibatches."""

    def __init__(self, program: Program):
        import jax
        import jax.numpy as jnp
        import optax

        from impls.arena import jax_conv_rules, jax_rules
        from impls.common.jax_state import over_runs, sequential_runs

        self.jax, self.jnp, self.p = jax, jnp, program
        activation = program.model["activation"]
        c = self.c = (jax_conv_rules.build(program.rule, program.net, activation, program.hp) if program.net
                      else jax_rules.build(program.rule, program.sizes, activation, program.hp))
        inits = [c.init(s) for s in program.seeds]
        self.params = jax_rules.stack([p for p, _ in inits])
        self.rule_state = jax_rules.stack([s for _, s in inits]) if inits[0][1] != () else ()
        mask = jax.tree_util.tree_map(lambda m, p: jnp.full_like(p, m), c.trainable(inits[0][0]), inits[0][0])
        self.adam = optax.scale_by_adam(*ADAM[:2], eps=ADAM[2]) if program.hp["optimizer"] == "adam" else None
        self.opt_state = jax.vmap(self.adam.init)(self.params) if self.adam else ()
        d = program.data
        self.x, self.y = jnp.asarray(d.x_train), jnp.asarray(d.y_train)
        self.x_eval = {"val": jnp.asarray(d.x_val), "test": jnp.asarray(d.x_test)}
        self.labels = {"val": d.labels_val, "test": d.labels_test}
        probe = min(int(program.hp["probe"]), len(d.x_train))
        self.probe = (jnp.asarray(d.x_train[:probe]), jnp.asarray(d.y_train[:probe]))
        self.lrs = jnp.asarray(program.lrs)
        self.base_keys = jnp.stack([jax.random.PRNGKey(s) for s in program.seeds])

        def run_epoch(params, rule_state, opt_state, batches, key, lr, x, y):
            def step(carry, item):
                p, s, o = carry
                t, idx = item
                g, s, loss = c.estimate(p, s, x[idx], y[idx], jax.random.fold_in(key, t))
                g = jax.tree_util.tree_map(lambda gi, m: gi * m, g, mask)
                if self.adam is not None:
                    g, o = self.adam.update(g, o)
                p = jax.tree_util.tree_map(lambda pi, gi: pi - lr * gi, p, g)
                return (p, s, o), loss

            steps = batches.shape[0]
            (p, s, o), losses = jax.lax.scan(step, (params, rule_state, opt_state), (jnp.arange(steps), batches))
            return p, s, o, losses.mean()

        def predict(params, x):
            return jnp.argmax(c.logits(params, x), axis=-1)

        def cosine(params, rule_state, key, x, y):
            g, _, _ = c.estimate(params, rule_state, x, y, key)
            a, b = c.weights(g), c.bp_grads(params, x, y)
            dot = sum(jnp.vdot(u, v) for u, v in zip(a, b))
            norm = jnp.sqrt(sum(jnp.vdot(u, u) for u in a) * sum(jnp.vdot(v, v) for v in b))
            return dot / norm

        def one_step(params, rule_state, opt_state, x, y, key, lr):
            g, s, loss = c.estimate(params, rule_state, x, y, key)
            g = jax.tree_util.tree_map(lambda gi, m: gi * m, g, mask)
            o = opt_state
            if self.adam is not None:
                g, o = self.adam.update(g, o)
            return jax.tree_util.tree_map(lambda pi, gi: pi - lr * gi, params, g), s, o, loss

        self._one_step = one_step
        sequential = sequential_runs(program.net is not None)     # conv nets on CPU loop over their runs
        self._epoch = jax.jit(over_runs(run_epoch, (0, 0, 0, 0, 0, 0, None, None), sequential))
        self._predict = jax.jit(over_runs(predict, (0, None), sequential))
        self._cosine = jax.jit(over_runs(cosine, (0, 0, 0, None, None), sequential))

    def _keys(self, epoch: int):
        return self.jax.vmap(lambda k: self.jax.random.fold_in(k, epoch))(self.base_keys)

    def train_epoch(self, batches: np.ndarray, epoch: int) -> np.ndarray:
        self.params, self.rule_state, self.opt_state, loss = self._epoch(
            self.params, self.rule_state, self.opt_state, self.jnp.asarray(batches), self._keys(epoch), self.lrs,
            self.x, self.y)
        return np.asarray(loss, np.float64)

    def accuracies(self) -> dict:
        out = {}
        for split in ("val", "test"):
            predicted = np.asarray(self._predict(self.params, self.x_eval[split]))
            out[f"{split}_acc"] = np.array([_accuracy(row, self.labels[split]) for row in predicted])
        return out

    def cosines(self) -> np.ndarray:
        keys = self._keys(10_000_000)   # a stream of its own: the probe's noise (NP) is not a training step's
        return np.asarray(self._cosine(self.params, self.rule_state, keys, *self.probe), np.float64)

    def weights(self, i: int) -> list[np.ndarray]:
        one = self.jax.tree_util.tree_map(lambda a: a[i], self.params)
        return [np.asarray(w) for w in self.c.weights(one)]

    def step_memory_mb(self) -> float:
        """Peak bytes of one training step of one run, as XLA compiled it: its arguments (parameters,
        rule and optimiser state, the minibatch) + outputs + temporaries − buffers it updates in place."""
        first = lambda tree: self.jax.tree_util.tree_map(lambda a: a[0], tree)   # noqa: E731
        b = self.p.batch_size
        stats = self.jax.jit(self._one_step).lower(
            first(self.params), first(self.rule_state), first(self.opt_state), self.x[:b], self.y[:b],
            self.base_keys[0], self.lrs[0]).compile().memory_analysis()
        total = (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
                 - stats.alias_size_in_bytes)
        return total / 2 ** 20

    def state(self):
        from impls.common import jax_state

        return jax_state.by_path({"params": self.params, "rule_state": self.rule_state, "opt": self.opt_state})

    def load_state(self, state):
        from impls.common import jax_state

        restored = jax_state.from_paths({"params": self.params, "rule_state": self.rule_state, "opt": self.opt_state},
                                        state)
        self.params, self.rule_state, self.opt_state = restored["params"], restored["rule_state"], restored["opt"]

    def device(self):
        from impls.common import provenance

        return provenance.jax_device()


def _live_tensor_bytes_class():
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LiveTensorBytes(TorchDispatchMode):
        """Bytes of the tensor storages alive while the mode is on: the given inputs, plus the output of
        every op from when it is made until the last tensor on that storage is freed; ``peak`` is the
        largest total. A measurement of what a step allocates, independent of the allocator's caching."""

        def __init__(self, inputs):
            super().__init__()
            self.live: dict[int, int] = {}
            self.current = self.peak = 0
            for tensor in inputs:
                if isinstance(tensor, torch.Tensor):
                    self._add(tensor, track=False)

        def _add(self, tensor, track=True):
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key in self.live or storage.nbytes() == 0:
                return
            self.live[key] = storage.nbytes()
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
            if track:
                weakref.finalize(tensor, self._free, key)

        def _free(self, key):
            self.current -= self.live.pop(key, 0)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for leaf in tree_leaves(out):
                if isinstance(leaf, torch.Tensor):
                    self._add(leaf)
            return out

    return LiveTensorBytes


def LiveTensorBytes(inputs):   # noqa: N802 (a class, built where torch is imported)
    return _live_tensor_bytes_class()(inputs)


class TorchTrainer:
    """The runs of a PyTorch contender, stacked along a leading run axis (float32, CPU or CUDA)."""

    def __init__(self, program: Program):
        import torch

        from impls.arena import torch_rules

        self.torch, self.p = torch, program
        self.dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.c = torch_rules.build(program.rule, program.sizes, program.model["activation"], program.hp)
        weights, state = self.c.init(program.seeds)
        self.weights_ = [w.to(self.dev) for w in weights]
        self.rule_state = self._to(state)
        self.adam = program.hp["optimizer"] == "adam"
        self.moments = [[torch.zeros_like(w) for w in self.weights_] for _ in range(2)] if self.adam else []
        self.steps_done = 0
        d = program.data
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.dev)   # noqa: E731
        self.x, self.y = as_t(d.x_train), as_t(d.y_train)
        self.x_eval = {"val": as_t(d.x_val), "test": as_t(d.x_test)}
        self.labels = {"val": d.labels_val, "test": d.labels_test}
        probe = min(int(program.hp["probe"]), len(d.x_train))
        runs = len(program.seeds)
        self.probe = (self.x[:probe].expand(runs, -1, -1), self.y[:probe].expand(runs, -1, -1))
        self.lrs = torch.from_numpy(program.lrs).to(self.dev).view(-1, 1, 1)

    def _to(self, state):
        if isinstance(state, (list, tuple)):
            return type(state)(self._to(s) for s in state)
        return None if state is None else state.to(self.dev)

    @property
    def _no_grad(self):
        return self.torch.no_grad()

    def train_epoch(self, batches: np.ndarray, epoch: int) -> np.ndarray:
        torch = self.torch
        idx_all = torch.from_numpy(batches).to(self.dev)
        total = torch.zeros(len(self.p.seeds), dtype=torch.float64, device=self.dev)
        with self._no_grad:
            for t in range(idx_all.shape[1]):
                idx = idx_all[:, t]
                grads, loss = self.c.estimate(self.weights_, self.rule_state, self.x[idx], self.y[idx])
                self._update(grads)
                total += loss.double()
        return (total / idx_all.shape[1]).cpu().numpy()

    def _update(self, grads):
        if not self.adam:
            for w, g in zip(self.weights_, grads):
                w.sub_(self.lrs * g)
            return
        b1, b2, eps = ADAM
        self.steps_done += 1
        c1, c2 = 1 - b1 ** self.steps_done, 1 - b2 ** self.steps_done
        for w, g, m, v in zip(self.weights_, grads, *self.moments):
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            w.sub_(self.lrs * (m / c1) / ((v / c2).sqrt() + eps))

    def accuracies(self) -> dict:
        from impls.arena import torch_rules

        out = {}
        with self._no_grad:
            for split in ("val", "test"):
                z = torch_rules.logits(self.weights_, self.x_eval[split], self.p.model["activation"])
                predicted = z.argmax(-1).cpu().numpy()
                out[f"{split}_acc"] = np.array([_accuracy(row, self.labels[split]) for row in predicted])
        return out

    def cosines(self) -> np.ndarray:
        with self._no_grad:
            grads, _ = self.c.estimate(self.weights_, self.rule_state, *self.probe)
            exact = self.c.bp_grads(self.weights_, *self.probe)
        return np.array([nets.cosine([g[r].cpu().numpy() for g in grads], [e[r].cpu().numpy() for e in exact])
                         for r in range(len(self.p.seeds))])

    def weights(self, i: int) -> list[np.ndarray]:
        return [w[i].T.cpu().numpy() for w in self.weights_]

    def step_memory_mb(self) -> float:
        """Peak bytes of tensors alive during one training step of one run: its inputs (weights, rule
        state, the minibatch) and every tensor the step's operations allocate, each counted from the op
        that makes it until it is freed (``LiveTensorBytes``)."""
        one = lambda t: None if t is None else t[:1].clone()   # noqa: E731
        weights = [one(w) for w in self.weights_]
        state = self.rule_state if not isinstance(self.rule_state, (list, tuple)) else type(self.rule_state)(
            one(t) for t in self.rule_state)
        state = one(state) if isinstance(state, self.torch.Tensor) else state
        idx = self.torch.arange(self.p.batch_size, device=self.dev).view(1, -1)
        x, t = self.x[idx], self.y[idx]
        tracker = LiveTensorBytes([*weights, *(state if isinstance(state, (list, tuple)) else [state]), x, t])
        with self._no_grad, tracker:
            grads, _ = self.c.estimate(weights, state, x, t)
            for w, g in zip(weights, grads):
                w.sub_(0.01 * g)
            del grads
        return tracker.peak / 2 ** 20

    def state(self):
        tensors = {f"w{l}": w for l, w in enumerate(self.weights_)}
        for k, moment in enumerate(self.moments):
            tensors.update({f"m{k}_{l}": m for l, m in enumerate(moment)})
        out = {k: v.cpu().numpy() for k, v in tensors.items()}
        out["steps_done"] = np.asarray(self.steps_done)
        return out

    def load_state(self, state):
        torch = self.torch
        for l, w in enumerate(self.weights_):
            w.copy_(torch.from_numpy(np.asarray(state[f"w{l}"])))
        for k, moment in enumerate(self.moments):
            for l, m in enumerate(moment):
                m.copy_(torch.from_numpy(np.asarray(state[f"m{k}_{l}"])))
        self.steps_done = int(state["steps_done"])

    def device(self):
        from impls.common.torch_loop import device_record

        return device_record(self.dev)
