"""The ImageNet program of two_routes for the common driver (impls.common.driver); protocol:
papers/two_routes/README.md, "Training protocol at paper scale".

Caller: ``impls.two_routes.train.make_program`` for ``dataset: imagenet``. The data come from the
stream the ImageNet index names: an ImageFolder tree through torchvision (``impls.two_routes.imagenet``,
the default) or TFDS through grain (``impls.two_routes.imagenet_tfds``, config ``data.loader: tfds``);
the update is ``impls.two_routes.trainer.Trainer``.

One ImageNet run fills the devices, so the runs of a batch are not stacked: each keeps its own state,
replicated over a 1-d mesh of every device of every process (``impls.common.host_shards``), and every
epoch trains them one after another (``train_epoch`` loops over the active runs), each step
data-parallel with the global batch sharded over the mesh. With several processes (a multi-host TPU
slice, ``impls.common.distributed``; TFDS stream only) each reads its own slice of every global batch
and the slices are assembled into global arrays; every process runs this same program and computes the
same metrics. A run is independent of the others (own seed, data order and noise), so this equals
training each run alone; all runs share one compiled step, evaluation and measurement.

Per run and epoch: the training stream (reshuffled per (seed, epoch)), then every validation image
scored (top-1, top-5, loss, and ``test_n`` the images scored, summed over the global batches: each
image once), then every ``metric_every`` epochs and at the last, the alignment angles on the first
training batch of epoch 0's stream (loaded without workers, its crops seeded by (seed, epoch): the same
in every process). Seeds: key = PRNGKey(seed); weights
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
from impls.common.host_shards import to_global
from impls.common.io import load_npz
from impls.two_routes import options
from impls.two_routes.imagenet import FolderStream, data_sharding, default_workers
from impls.two_routes.program import TwoRoutesProgram
from impls.two_routes.trainer import Trainer, topk_correct

TEST = ["test_acc", "test_top5", "test_loss", "test_n"]


class ImageNetProgram(TwoRoutesProgram):
    """A batch of ImageNet runs, trained one after another inside each epoch."""

    def __init__(self, job, options_, workers: int | None = None):
        super().__init__(job)
        spec = job.specs[0]
        self.workers = default_workers() if workers is None else workers
        self.size = int(options.model_config(spec)["image_size"])
        self.data = open_stream(load_npz(options_.datasets_dir / "imagenet.npz"), self.size, self.workers)
        _, self.batch_sh, self.repl = data_sharding()
        self.n_dev = len(jax.devices())
        self.bs, self.epochs = spec["batch_size"], spec["epochs"]
        if self.bs % self.n_dev:
            raise ValueError(f"batch_size {self.bs} is not a multiple of the {self.n_dev} devices")
        self.every = options.hparams(spec)["metric_every"]
        self.spe = self.data.n_train // self.bs
        trainer = self.trainer = Trainer(spec, len(self.data.classes), self.spe)
        x0 = jnp.zeros((1, self.size, self.size, 3), jnp.float32)
        init, probes = jax.jit(lambda k: trainer.init(k, x0)), jax.jit(lambda k: trainer.probes(k, x0))
        self.keys = [jax.random.PRNGKey(s["seed"]) for s in job.specs]
        self.lrs = [jnp.float32(s["hparams"]["lr"]) for s in job.specs]
        self.states = [jax.device_put(init(jax.random.fold_in(k, 0)), self.repl) for k in self.keys]
        self.probes = [jax.device_put(probes(k), self.repl) for k in self.keys]
        self.first = []          # the alignment batch of each run: epoch 0's first training batch
        for s in job.specs:
            x, y, _ = self.data.first(self.bs, s["seed"])
            self.first.append((to_global(x, self.batch_sh), to_global(y, self.batch_sh)))
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
        return (topk_correct(z, y, 1) * m).sum(), (topk_correct(z, y, 5) * m).sum(), (loss * m).sum(), m.sum()

    # ------------------------------------------------------------------ one run
    def _evaluate(self, i) -> dict[str, float]:
        state, c1, c5, loss, n = self.states[i], 0.0, 0.0, 0.0, 0.0
        for x, y, m in self.data.val(self.bs):
            r = self.eval_step(state["params"], state["batch_stats"], *(to_global(a, self.batch_sh) for a in (x, y, m)))
            c1, c5, loss, n = c1 + float(r[0]), c5 + float(r[1]), loss + float(r[2]), n + float(r[3])
        return {"test_acc": 100 * c1 / n, "test_top5": 100 * c5 / n, "test_loss": loss / n, "test_n": n}

    def _align(self, i) -> dict[str, float]:
        state = self.states[i]
        return {f"align_{k}": float(v) for k, v in self.measure(state["params"], state["batch_stats"],
                                                                 self.probes[i], *self.first[i], self.keys[i]).items()}

    def _train(self, i, epoch) -> dict[str, float]:
        spec, key, sums, count = self.specs[i], self.keys[i], {}, 0
        for t, (x, y, _) in enumerate(self.data.train(self.bs, spec["seed"], epoch)):
            g = (epoch - 1) * self.spe + t
            k = jax.random.fold_in(jax.random.fold_in(key, 2), g)
            self.states[i], out = self.step(self.states[i], self.lrs[i], jnp.uint32(g), k,
                                            to_global(x, self.batch_sh), to_global(y, self.batch_sh))
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
        extra = {} if isinstance(self.data, FolderStream) else {"loader": "tfds", "processes": jax.process_count()}
        return {"steps_per_epoch": self.spe, "devices": self.n_dev,
                "val_images_scored": int(progress.history["test_n"][0, i]), **extra}


def open_stream(index: dict, image_size: int, workers: int):
    """The stream an ImageNet index names: TFDS (its ``loader`` entry) or the ImageFolder tree (one
    process only: several processes each need their own slice of every batch, which only the TFDS
    stream reads)."""
    if "loader" in index and str(index["loader"]) == "tfds":
        from impls.two_routes.imagenet_tfds import TfdsImageNet

        return TfdsImageNet(index, image_size, workers, jax.process_index(), jax.process_count())
    if jax.process_count() > 1:
        raise ValueError(f"{jax.process_count()} processes: the ImageFolder stream reads every batch in one process; "
                         f"multi-host ImageNet needs the TFDS stream (config data.loader: {{imagenet: tfds}})")
    return FolderStream(index, image_size, workers)
