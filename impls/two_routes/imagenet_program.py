"""The ImageNet program of two_routes for the common driver (impls.common.driver); protocol:
papers/two_routes/README.md, "Training protocol at paper scale".

Caller: ``impls.two_routes.train.make_program`` for ``dataset: imagenet``. The data pipeline (index,
transforms, worker processes, device mesh) is ``impls.two_routes.imagenet``; the update is
``impls.two_routes.trainer.Trainer``.

One ImageNet run fills the devices, so the runs of a batch are not stacked: each keeps its own state,
replicated over a 1-d mesh of the local devices, and every epoch trains them one after another
(``train_epoch`` loops over the active runs), each step data-parallel with the batch sharded over the
mesh. A run is independent of the others (own seed, data order and noise), so this equals training each
run alone; all runs share one compiled step, evaluation and measurement.

Per run and epoch: the training stream (reshuffled per (seed, epoch)), then every validation image
scored (top-1, top-5, loss, and ``test_n`` the images scored), then every ``metric_every`` epochs and at
the last, the alignment angles on the first training batch of epoch 0's stream (loaded without workers,
its crops seeded by (seed, epoch): the same in every process). Seeds: key = PRNGKey(seed); weights
fold_in(key, 0), probes and alignment noise key itself, step t's noise fold_in(fold_in(key, 2), t). A
diverged run (``program.diverged_at``) trains no further.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from impls.common import jax_state
from impls.common.driver import Progress
from impls.common.io import load_npz
from impls.two_routes import options
from impls.two_routes.imagenet import data_sharding, default_workers, loader
from impls.two_routes.program import TwoRoutesProgram
from impls.two_routes.trainer import Trainer, topk_correct

TEST = ["test_acc", "test_top5", "test_loss", "test_n"]


class ImageNetProgram(TwoRoutesProgram):
    """A batch of ImageNet runs, trained one after another inside each epoch."""

    def __init__(self, job, options_, workers: int | None = None):
        super().__init__(job)
        spec = job.specs[0]
        self.workers = default_workers() if workers is None else workers
        self.index = load_npz(options_.datasets_dir / "imagenet.npz")
        _, self.batch_sh, self.repl = data_sharding()
        self.n_dev = len(jax.local_devices())
        self.bs, self.epochs = spec["batch_size"], spec["epochs"]
        if self.bs % self.n_dev:
            raise ValueError(f"batch_size {self.bs} is not a multiple of the {self.n_dev} local devices")
        self.every = options.hparams(spec)["metric_every"]
        self.size = int(options.model_config(spec)["image_size"])
        self.spe = len(self.index["train_files"]) // self.bs
        trainer = self.trainer = Trainer(spec, len(self.index["classes"]), self.spe)
        x0 = jnp.zeros((1, self.size, self.size, 3), jnp.float32)
        init, probes = jax.jit(lambda k: trainer.init(k, x0)), jax.jit(lambda k: trainer.probes(k, x0))
        self.keys = [jax.random.PRNGKey(s["seed"]) for s in job.specs]
        self.lrs = [jnp.float32(s["hparams"]["lr"]) for s in job.specs]
        self.states = [jax.device_put(init(jax.random.fold_in(k, 0)), self.repl) for k in self.keys]
        self.probes = [jax.device_put(probes(k), self.repl) for k in self.keys]
        self.first = []          # the alignment batch of each run: epoch 0's first training batch
        for s in job.specs:
            x, y, _ = next(loader(self.index, "train", self.bs, self.size, 0, s["seed"], 0))
            self.first.append((jax.device_put(x, self.batch_sh), jax.device_put(y, self.batch_sh)))
        self.step = jax.jit(trainer.step, donate_argnums=(0,))
        self.measure = jax.jit(trainer.alignment)
        self.eval_step = jax.jit(self._eval_step)
        # metrics in the order the per-run loop first recorded them: test, angles (epoch 0), train
        angles = jax.eval_shape(self.measure, self.states[0]["params"], self.states[0]["batch_stats"],
                                self.probes[0], *self.first[0], self.keys[0])
        steps = jax.eval_shape(trainer.step, self.states[0], self.lrs[0], jnp.uint32(0), self.keys[0],
                               *self.first[0])[1]
        self.metric_names = TEST + [f"align_{k}" for k in angles] + [f"train_{k}" for k in steps]

    def _eval_step(self, params, stats, x, y, m):
        z = self.trainer.evaluate_chunk(params, stats, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(z, y)
        return (topk_correct(z, y, 1) * m).sum(), (topk_correct(z, y, 5) * m).sum(), (loss * m).sum()

    # ------------------------------------------------------------------ one run
    def _evaluate(self, i) -> dict[str, float]:
        state, c1, c5, loss, n = self.states[i], 0.0, 0.0, 0.0, 0.0
        for x, y, m in loader(self.index, "val", self.bs, self.size, self.workers):
            r = self.eval_step(state["params"], state["batch_stats"], jax.device_put(x, self.batch_sh),
                               jax.device_put(y, self.batch_sh), jax.device_put(m, self.batch_sh))
            c1, c5, loss, n = c1 + float(r[0]), c5 + float(r[1]), loss + float(r[2]), n + float(m.sum())
        return {"test_acc": 100 * c1 / n, "test_top5": 100 * c5 / n, "test_loss": loss / n, "test_n": n}

    def _align(self, i) -> dict[str, float]:
        state = self.states[i]
        return {f"align_{k}": float(v) for k, v in self.measure(state["params"], state["batch_stats"],
                                                                 self.probes[i], *self.first[i], self.keys[i]).items()}

    def _train(self, i, epoch) -> dict[str, float]:
        spec, key, sums, count = self.specs[i], self.keys[i], {}, 0
        for t, (x, y, _) in enumerate(loader(self.index, "train", self.bs, self.size, self.workers, spec["seed"],
                                             epoch)):
            g = (epoch - 1) * self.spe + t
            k = jax.random.fold_in(jax.random.fold_in(key, 2), g)
            self.states[i], out = self.step(self.states[i], self.lrs[i], jnp.uint32(g), k,
                                            jax.device_put(x, self.batch_sh), jax.device_put(y, self.batch_sh))
            sums = {n: sums.get(n, 0.0) + v for n, v in out.items()}   # device-side sums, no host sync
            count += 1
        return {f"train_{n}": float(v) / max(count, 1) for n, v in sums.items()}

    # ------------------------------------------------------------------ the batch
    def _over_runs(self, one, active) -> dict[str, np.ndarray]:
        out = {k: np.full(len(self.states), np.nan) for k in self.metric_names}
        for i in np.flatnonzero(active):
            for k, v in one(i).items():
                out[k][i] = v
        return out

    def evaluate(self):
        return self._over_runs(lambda i: {**self._evaluate(i), **self._align(i)}, np.ones(len(self.states), bool))

    def train_epoch(self, progress: Progress):
        epoch = progress.epoch

        def one(i):
            out = {**self._train(i, epoch), **self._evaluate(i)}
            if epoch % self.every == 0 or epoch == self.epochs:
                out.update(self._align(i))
            return out

        return self._over_runs(one, progress.active)

    def state(self):
        return {"runs": [jax_state.by_path(s) for s in self.states]}

    def load_state(self, state):
        self.states = [jax.device_put(jax_state.from_paths(s, saved), self.repl)
                       for s, saved in zip(self.states, state["runs"])]

    def run_files(self, i):
        leaves = jax.tree_util.tree_leaves(self.states[i]["params"])
        return {"params.npz": {f"leaf_{j}": np.asarray(x) for j, x in enumerate(leaves)}}

    def record(self, i, progress):
        return {"steps_per_epoch": self.spe, "devices": self.n_dev,
                "val_images_scored": int(progress.history["test_n"][0, i])}
