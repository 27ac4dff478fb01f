"""Streaming ImageNet for two_routes at paper scale (spec §3): an ImageFolder tree, torchvision transforms,
several worker processes, and data parallelism over every local device (GPUs or TPU chips) with jax.sharding.

- ``python -m impls.two_routes.imagenet index ROOT OUT.npz`` writes the tree's index (file lists, labels,
  class names; no pixels): ROOT/train/<class>/*.JPEG and ROOT/val/<class>/*.JPEG (the ILSVRC validation set
  sorted into class folders, as torchvision's ImageNet or the usual valprep script leave it).
- Train transform (ResNet-v1, spec §3): Inception random-resized crop (area 0.08-1, aspect 3/4-4/3) to
  ``image_size``, horizontal flip, ImageNet mean/std. Val: resize the short side to image_size·256/224, centre
  crop. Every validation image is scored (50,000; the original scored 48 × 1024 = 49,152): the last batch
  is padded and masked.
- Batches are placed with ``NamedSharding(mesh, P("data"))`` on a 1-d mesh of ``jax.local_devices()``;
  parameters are replicated. BN statistics are therefore computed over the global batch (the original used
  per-device statistics, spec §7.7: with one device they coincide).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
EXTENSIONS = (".jpeg", ".jpg", ".png")


def index_tree(root: str | Path) -> dict:
    """File lists and labels of ROOT/{train,val}/<class>/* (classes = sorted train folder names)."""
    root = Path(root)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise FileNotFoundError(f"{root} has no train/ and val/ class folders; set CREDITBENCH_IMAGENET_DIR to an "
                                f"ImageFolder tree of ILSVRC-2012 (val sorted into class folders)")
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    out = {"classes": np.array(classes), "root": np.array(str(root))}
    for split in ("train", "val"):
        files, labels = [], []
        for i, c in enumerate(classes):
            folder = root / split / c
            names = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in EXTENSIONS) if folder.is_dir() else []
            files += [f"{split}/{c}/{n}" for n in names]
            labels += [i] * len(names)
        out[f"{split}_files"], out[f"{split}_labels"] = np.array(files), np.array(labels, np.int32)
    return out


class _Images:
    """torch Dataset over an index: (HWC float32 normalised image, label)."""

    def __init__(self, root, files, labels, transform):
        self.root, self.files, self.labels, self.transform = Path(root), files, labels, transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.root / str(self.files[i])) as im:
            x = self.transform(im.convert("RGB"))
        return (np.asarray(x, np.float32).transpose(1, 2, 0) - MEAN) / STD, int(self.labels[i])


def transforms(train: bool, image_size: int):
    from torchvision import transforms as T

    if train:
        return T.Compose([T.RandomResizedCrop(image_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
                          T.RandomHorizontalFlip(), T.ToTensor()])
    return T.Compose([T.Resize(int(round(image_size * 256 / 224))), T.CenterCrop(image_size), T.ToTensor()])


def loader(index: dict, split: str, batch_size: int, image_size: int, workers: int, seed: int = 0, epoch: int = 0):
    """Iterator of numpy (x NHWC, y, mask) batches. train: reshuffled per (seed, epoch), drop_last;
    val: file order, every image once, last batch padded (mask 0 on the padding)."""
    import torch

    train = split == "train"
    ds = _Images(str(index["root"]), index[f"{split}_files"], index[f"{split}_labels"], transforms(train, image_size))
    gen = torch.Generator()
    gen.manual_seed(int(seed) * 100_003 + int(epoch))
    it = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=train, drop_last=train, generator=gen,
                                     num_workers=workers, collate_fn=_collate,
                                     worker_init_fn=_seed_worker, persistent_workers=False)
    for x, y in it:
        n = len(y)
        mask = np.ones(batch_size, np.float32)
        if n < batch_size:
            pad = batch_size - n
            x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
            y = np.concatenate([y, np.zeros(pad, y.dtype)])
            mask[n:] = 0.0
        yield x, y, mask


def _collate(items):
    return np.stack([a for a, _ in items]), np.array([b for _, b in items], np.int32)


def _seed_worker(worker_id):
    import random

    import torch

    s = torch.initial_seed() % 2 ** 32
    np.random.seed(s)
    random.seed(s)


def data_sharding():
    """(mesh over the local devices, batch sharding, replicated sharding)."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    mesh = Mesh(np.array(jax.local_devices()), ("data",))
    return mesh, NamedSharding(mesh, P("data")), NamedSharding(mesh, P())


def default_workers() -> int:
    """$CREDITBENCH_DATA_WORKERS, else the CPUs this process may use (SLURM's cpus_per_task), at most 16."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(os.environ.get("CREDITBENCH_DATA_WORKERS", min(16, cpus)))


def train_imagenet_batch(job, options_, write_runs, workers: int | None = None) -> None:
    """Train each run of ``job`` in turn (one ImageNet run fills the devices), data-parallel over local devices."""
    import jax
    import jax.numpy as jnp

    from impls.common.checkpointing import CheckpointClock
    from impls.common.io import load_npz
    from impls.two_routes import options
    from impls.two_routes import train as T

    workers = default_workers() if workers is None else workers
    index = load_npz(options_.datasets_dir / "imagenet.npz")
    _, batch_sh, repl = data_sharding()
    n_dev = len(jax.local_devices())
    for i in range(len(job.run_ids)):
        sub = type(job)(job.paper, job.batch_id, job.batch_dir, job.run_ids[i:i + 1], job.specs[i:i + 1],
                        job.run_dirs[i:i + 1])
        spec = sub.specs[0]
        hp, bs, epochs = options.hparams(spec), spec["batch_size"], spec["epochs"]
        if bs % n_dev:
            raise ValueError(f"batch_size {bs} is not a multiple of the {n_dev} local devices")
        size = int(options.model_config(spec)["image_size"])
        n_train = len(index["train_files"])
        spe = n_train // bs
        trainer = T.Trainer(spec, len(index["classes"]), spe)
        key = jax.random.PRNGKey(spec["seed"])
        x0 = jnp.zeros((1, size, size, 3), jnp.float32)
        state = jax.device_put(jax.jit(lambda k: trainer.init(k, x0))(jax.random.fold_in(key, 0)), repl)
        probes = jax.device_put(jax.jit(lambda k: trainer.probes(k, x0))(key), repl)
        lr = jnp.float32(spec["hparams"]["lr"])
        step = jax.jit(trainer.step, donate_argnums=(0,))
        measure = jax.jit(trainer.alignment)

        @jax.jit
        def eval_step(params, stats, x, y, m):
            z = trainer.evaluate_chunk(params, stats, x)
            import optax
            loss = optax.softmax_cross_entropy_with_integer_labels(z, y)
            return ((T.topk_correct(z, y, 1) * m).sum(), (T.topk_correct(z, y, 5) * m).sum(), (loss * m).sum())

        history: dict[str, np.ndarray] = {}

        def put(name, epoch, value):
            history.setdefault(name, np.full((epochs + 1, 1), np.nan))[epoch, 0] = float(value)

        def evaluate(epoch):
            c1 = c5 = loss = n = 0.0
            for x, y, m in loader(index, "val", bs, size, workers):
                r = eval_step(state["params"], state["batch_stats"], jax.device_put(x, batch_sh),
                              jax.device_put(y, batch_sh), jax.device_put(m, batch_sh))
                c1, c5, loss, n = c1 + float(r[0]), c5 + float(r[1]), loss + float(r[2]), n + float(m.sum())
            put("test_acc", epoch, 100 * c1 / n), put("test_top5", epoch, 100 * c5 / n), put("test_loss", epoch, loss / n)
            put("test_n", epoch, n)

        def align(epoch, x, y):
            for k, v in measure(state["params"], state["batch_stats"], probes, x, y, key).items():
                put(f"align_{k}", epoch, v)

        ckpt = sub.batch_dir / f"checkpoint-{sub.run_ids[0]}.npz"
        start, t_start, diverged = 0, time.perf_counter(), np.array([-1])
        first = next(loader(index, "train", bs, size, 0, spec["seed"], 0))
        xa, ya = jax.device_put(first[0], batch_sh), jax.device_put(first[1], batch_sh)
        if ckpt.exists():
            data = load_npz(ckpt)
            treedef = jax.tree_util.tree_structure(state)
            state = jax.device_put(jax.tree_util.tree_unflatten(
                treedef, [jnp.asarray(data[f"state_{j}"]) for j in range(treedef.num_leaves)]), repl)
            start = int(data["epoch"])
            history = {k[5:]: data[k].copy() for k in data if k.startswith("hist_")}
            t_start -= float(data["elapsed_s"])
        else:
            evaluate(0)
            align(0, xa, ya)
        clock = CheckpointClock(options_.checkpoint_minutes)
        epoch = start
        for epoch in range(start + 1, epochs + 1):
            sums, count = {}, 0
            for t, (x, y, _) in enumerate(loader(index, "train", bs, size, workers, spec["seed"], epoch)):
                k = jax.random.fold_in(jax.random.fold_in(key, 2), (epoch - 1) * spe + t)
                state, out = step(state, lr, jnp.uint32((epoch - 1) * spe + t), k, jax.device_put(x, batch_sh),
                                  jax.device_put(y, batch_sh))
                sums = {n: sums.get(n, 0.0) + v for n, v in out.items()}   # device-side sums, no host sync
                count += 1
            for n, v in sums.items():
                put(f"train_{n}", epoch, float(v) / max(count, 1))
            evaluate(epoch)
            if epoch % hp["metric_every"] == 0 or epoch == epochs:
                align(epoch, xa, ya)
            print(f"[{sub.batch_id}] epoch {epoch}/{epochs} | top-1 {history['test_acc'][epoch, 0]:.2f} | "
                  f"{len(jax.local_devices())} devices", file=sys.stderr, flush=True)
            if T.diverged_at(history, epoch)[0]:
                diverged[0] = epoch
                break
            if epoch < epochs and clock.due():
                from impls.common.io import atomic_write_npz
                arrays = {"epoch": np.asarray(epoch), "elapsed_s": np.asarray(time.perf_counter() - t_start)}
                arrays.update({f"state_{j}": np.asarray(a) for j, a in enumerate(jax.tree_util.tree_leaves(state))})
                arrays.update({f"hist_{k}": v for k, v in history.items()})
                atomic_write_npz(ckpt, arrays)
                clock.saved(epoch)
        write_runs(sub, history, diverged, epoch, time.perf_counter() - t_start,
                   {"steps_per_epoch": spe, "devices": n_dev, "val_images_scored": int(history["test_n"][0, 0])},
                   jax.tree_util.tree_map(lambda a: np.asarray(a)[None], state["params"]))
        ckpt.unlink(missing_ok=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "index":
        print("usage: python -m impls.two_routes.imagenet index ROOT OUT.npz", file=sys.stderr)
        return 2
    from impls.common.io import atomic_write_npz

    try:
        index = index_tree(argv[1])
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    atomic_write_npz(argv[2], index)
    print(f"{len(index['train_files'])} train and {len(index['val_files'])} val images, "
          f"{len(index['classes'])} classes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
