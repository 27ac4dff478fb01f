"""Streaming ImageNet for two_routes at paper scale (papers/two_routes/README.md, "Training protocol at paper scale"):
an ImageFolder tree, torchvision transforms, several worker processes, and data parallelism over every device
(GPUs or TPU chips) with jax.sharding, in one process. The other stream, TFDS through grain, which also runs
over several processes, is ``impls.two_routes.imagenet_tfds``.

- Input: the index of the ImageFolder tree ROOT/train/<class>/*.JPEG and ROOT/val/<class>/*.JPEG (the ILSVRC
  validation set sorted into class folders, as torchvision's ImageNet or the usual valprep script leave it):
  file lists, labels, class names and the tree's root, no pixels (``impls.common.image_folder``). The generic
  ``dataset`` rule writes it (``snakemake resources/datasets/imagenet.npz``, i.e.
  ``python -m impls.common.datasets prepare imagenet resources/datasets/imagenet.npz``; ROOT =
  ``--imagenet-root``, else ``$CREDITBENCH_IMAGENET_DIR``, else /data/imagenet).
- Train transform (ResNet-v1, as the original): Inception random-resized crop (area 0.08-1, aspect 3/4-4/3) to
  ``image_size``, horizontal flip, ImageNet mean/std. Val: resize the short side to image_size·256/224, centre
  crop. Every validation image is scored (50,000; the original scored 48 × 1024 = 49,152): the last batch
  is padded and masked.
- Batches are placed with ``NamedSharding(mesh, P("data"))`` on a 1-d mesh of ``jax.devices()``;
  parameters are replicated. BN statistics are therefore computed over the global batch (the original used
  per-device statistics: with one device they coincide).

The training program that consumes this stream is ``impls.two_routes.imagenet_program``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
AUGMENT_STREAM = 7_000_003   # the crops/flips of a workers=0 loader: SeedSequence([loader seed, AUGMENT_STREAM])


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
    val: file order, every image once, last batch padded (mask 0 on the padding).

    The random crops and flips draw from torch's global RNG: with workers, each worker's is seeded
    from the loader's generator; without (``workers=0``), batches are decoded inside
    ``torch.random.fork_rng`` from a stream of their own seeded by (seed, epoch), so they are the
    same in every process and the caller's global RNG is left untouched.
    """
    import torch

    train = split == "train"
    ds = _Images(str(index["root"]), index[f"{split}_files"], index[f"{split}_labels"], transforms(train, image_size))
    gen_seed = int(seed) * 100_003 + int(epoch)
    gen = torch.Generator()
    gen.manual_seed(gen_seed)
    it = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=train, drop_last=train, generator=gen,
                                     num_workers=workers, collate_fn=_collate,
                                     worker_init_fn=_seed_worker, persistent_workers=False)
    batches = iter(it) if workers > 0 else _in_process(it, gen_seed)
    for x, y in batches:
        n = len(y)
        mask = np.ones(batch_size, np.float32)
        if n < batch_size:
            pad = batch_size - n
            x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
            y = np.concatenate([y, np.zeros(pad, y.dtype)])
            mask[n:] = 0.0
        yield x, y, mask


def _in_process(it, gen_seed: int):
    """The batches of a ``workers=0`` loader, each decoded with the global torch RNG set to a stream of
    their own (seeded from ``gen_seed``) and restored afterwards, so that the caller's draws between
    batches neither perturb the crops nor are perturbed by them."""
    import torch

    state = torch.Generator().manual_seed(
        int(np.random.SeedSequence([gen_seed, AUGMENT_STREAM]).generate_state(1, np.uint64)[0] >> np.uint64(1))
    ).get_state()
    batches = iter(it)
    while True:
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(state)
            try:
                batch = next(batches)
            except StopIteration:
                return
            state = torch.get_rng_state()
        yield batch


def _collate(items):
    return np.stack([a for a, _ in items]), np.array([b for _, b in items], np.int32)


def _seed_worker(worker_id):
    import random

    import torch

    s = torch.initial_seed() % 2 ** 32
    np.random.seed(s)
    random.seed(s)


class FolderStream:
    """The ImageFolder index as the ImageNet program's stream (``imagenet_tfds.TfdsImageNet`` is the
    other): ``train``/``val``/``first`` batches through ``loader``; one process only."""

    process_count = 1

    def __init__(self, index: dict, image_size: int, workers: int):
        self.index, self.size, self.workers = index, image_size, workers
        self.classes = list(index["classes"])
        self.n_train = len(index["train_files"])

    def train(self, batch_size: int, seed: int, epoch: int):
        return loader(self.index, "train", batch_size, self.size, self.workers, seed, epoch)

    def val(self, batch_size: int):
        return loader(self.index, "val", batch_size, self.size, self.workers)

    def first(self, batch_size: int, seed: int):
        """Epoch 0's first training batch, decoded in this process (its crops seeded by (seed, 0))."""
        return next(loader(self.index, "train", batch_size, self.size, 0, seed, 0))


def data_sharding():
    """(mesh over every device of every process, batch sharding, replicated sharding)."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    from impls.common.host_shards import global_mesh

    mesh = global_mesh()
    return mesh, NamedSharding(mesh, P("data")), NamedSharding(mesh, P())


def default_workers() -> int:
    """$CREDITBENCH_DATA_WORKERS, else the CPUs this process may use (SLURM's cpus_per_task), at most 16."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(os.environ.get("CREDITBENCH_DATA_WORKERS", min(16, cpus)))
