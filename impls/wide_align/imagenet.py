"""Streaming ImageNet input pipeline for the wide_align PyTorch train loop (papers/wide_align/README.md, "ImageNet").

Data: an ImageFolder tree ROOT/train/<class>/*.JPEG, ROOT/val/<class>/*.JPEG (the ILSVRC-2012
validation images sorted into class folders), read through the index that
``python -m impls.common.datasets prepare imagenet resources/datasets/imagenet.npz`` writes (the
``dataset`` rule: ``snakemake resources/datasets/imagenet.npz``; two_routes reads the same index).
The index holds file names, labels and the tree's root; pixels are decoded by DataLoader worker
processes batch by batch and never cached.

Preprocessing (README "Network and data conventions"): train = RandomResizedCrop(image_size) with torchvision's
defaults (area 0.08-1, aspect 3/4-4/3, bilinear) + horizontal flip + ImageNet mean/std; val =
Resize(image_size·256/224) + CenterCrop(image_size) + mean/std. image_size = 224 in the paper.

Reproducibility, independent of the number of workers and of a run's batch-mates:

- Train order: epoch e of a run with seed s is the permutation drawn from
  SeedSequence([s + STREAM_DATA, e]); int(N/B) full batches (the remainder is dropped, as the original).
- Augmentation: every sample's crop and flip are drawn from its own torch seed, derived from
  (s, e, image index), so a sample looks the same whichever worker decodes it.
- Validation: every image exactly once per pass, in one fixed order per run (the permutation of
  SeedSequence([s + STREAM_EVAL])), in batches of ``EVAL_BATCH``; the last batch keeps the
  remainder (a remainder of one image joins the batch before it, since the net's norm uses batch
  statistics at evaluation and a batch of one is degenerate). Shuffled, not file order: the files
  are sorted by class, and batch statistics over two classes would be meaningless.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from impls.common.errors import DatasetUnavailable
from impls.common.image_folder import image_folder_layout

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 256 / 224
INDEX_KEYS = ("classes", "root", "train_files", "train_labels", "val_files", "val_labels")
STREAM_DATA, STREAM_EVAL, STREAM_AUGMENT = 3_000_017, 4_000_037, 7_000_003


def index_command(datasets_dir) -> str:
    return (f"CREDITBENCH_IMAGENET_DIR=/path/to/ILSVRC2012 snakemake --cores 1 {Path(datasets_dir) / 'imagenet.npz'} "
            f"(or `python -m impls.common.datasets prepare imagenet {Path(datasets_dir) / 'imagenet.npz'} "
            f"--imagenet-root /path/to/ILSVRC2012`)")


@dataclass(frozen=True)
class ImageIndex:
    """The tree's file lists (paths relative to ``root``) and labels; classes = sorted train folders."""

    root: Path
    classes: tuple[str, ...]
    train_files: np.ndarray
    train_labels: np.ndarray
    val_files: np.ndarray
    val_labels: np.ndarray

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return (self.train_files, self.train_labels) if name == "train" else (self.val_files, self.val_labels)


def load_index(datasets_dir) -> ImageIndex:
    """The index at ``datasets_dir/imagenet.npz``, after checking its tree is still there.

    Raises DatasetUnavailable naming the missing file or directory, the expected layout and the
    command that (re)builds the index. No fallback to any other data.
    """
    path = Path(datasets_dir) / "imagenet.npz"
    if not path.is_file():
        raise DatasetUnavailable(f"ImageNet index {path} does not exist; build it from the ImageFolder tree "
                                 f"({image_folder_layout('ROOT')}) with {index_command(datasets_dir)}")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in INDEX_KEYS if k not in z.files]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)}; delete it and rebuild with {index_command(datasets_dir)}")
        arrays = {k: z[k] for k in INDEX_KEYS}
    root = Path(str(arrays["root"]))
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DatasetUnavailable(f"ImageNet tree not found: {root / split} (named by the index {path}) is not a "
                                     f"directory. Expected layout: {image_folder_layout(root)}. Mount the tree there, or "
                                     f"delete {path} and rebuild it with {index_command(datasets_dir)}")
    return ImageIndex(root, tuple(str(c) for c in arrays["classes"]), arrays["train_files"],
                      arrays["train_labels"].astype(np.int64), arrays["val_files"], arrays["val_labels"].astype(np.int64))


def transforms(train: bool, image_size: int):
    """Spec §2: RandomResizedCrop + flip (train) or Resize + CenterCrop (val), then ImageNet mean/std."""
    from torchvision import transforms as T

    if train:
        head = [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()]
    else:
        head = [T.Resize(int(round(image_size * RESIZE_RATIO))), T.CenterCrop(image_size)]
    return T.Compose(head + [T.ToTensor(), T.Normalize(MEAN, STD)])


class ImageFiles(torch.utils.data.Dataset):
    """Item ``(i, sample_seed)`` -> (3×S×S float32 normalised image, label); decodes one file per item."""

    def __init__(self, root: Path, files: np.ndarray, labels: np.ndarray, transform):
        self.root, self.files, self.labels, self.transform = Path(root), files, labels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item):
        from PIL import Image

        i, sample_seed = item
        with Image.open(self.root / str(self.files[i])) as im:
            image = im.convert("RGB")
        with torch.random.fork_rng(devices=[]):  # the crop/flip draw of this sample only
            torch.manual_seed(sample_seed)
            x = self.transform(image)
        return x, int(self.labels[i])


def sample_seeds(seed: int, epoch: int, indices: np.ndarray) -> np.ndarray:
    """Per-sample augmentation seeds: an epoch base from SeedSequence([seed + STREAM_AUGMENT, epoch]),
    spread over image indices by an odd-multiplier Weyl step (distinct for the indices of any real tree)."""
    base = np.random.SeedSequence([int(seed) + STREAM_AUGMENT, int(epoch)]).generate_state(1, np.uint64)[0]
    with np.errstate(over="ignore"):
        mixed = base + np.asarray(indices, np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return (mixed >> np.uint64(1)).astype(np.int64)


class TrainBatches(torch.utils.data.Sampler):
    """Batches of (index, sample_seed) for one epoch: a fresh seeded permutation per epoch, full batches only.

    Iterated in the main process, so ``set_epoch`` reaches it even with persistent workers.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, int(seed), 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        return np.random.default_rng(np.random.SeedSequence([self.seed + STREAM_DATA, self.epoch])).permutation(self.n)

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self):
        order = self.order()
        for b in range(len(self)):
            chunk = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield list(zip(chunk.tolist(), sample_seeds(self.seed, self.epoch, chunk).tolist()))


class EvalBatches(torch.utils.data.Sampler):
    """Every image once, in one fixed order per seed (``shuffle=False``: file order); see the module doc."""

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True):
        self.n, self.batch_size = n, batch_size
        self.order = (np.random.default_rng(np.random.SeedSequence([int(seed) + STREAM_EVAL])).permutation(n)
                      if shuffle else np.arange(n))

    def bounds(self) -> list[tuple[int, int]]:
        edges = list(range(0, self.n, self.batch_size)) + [self.n]
        if len(edges) > 2 and edges[-1] - edges[-2] == 1:
            del edges[-2]
        return list(zip(edges[:-1], edges[1:]))

    def __len__(self) -> int:
        return len(self.bounds())

    def __iter__(self):
        for a, b in self.bounds():
            yield [(int(i), 0) for i in self.order[a:b]]


def default_workers() -> int:
    """$CREDITBENCH_DATA_WORKERS, else the CPUs this process may use (SLURM's cpus_per_task), at most 16."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(os.environ.get("CREDITBENCH_DATA_WORKERS", min(16, cpus)))


def loader(index: ImageIndex, split: str, batch_size: int, image_size: int, seed: int, workers: int,
           pin_memory: bool = False, shuffle_val: bool = True) -> torch.utils.data.DataLoader:
    """A DataLoader of (x (B, 3, S, S) float32, labels (B,) int64) batches over one split.

    train: its sampler is a :class:`TrainBatches` (call ``loader.batch_sampler.set_epoch(e)`` before
    each epoch); val: :class:`EvalBatches`. ``workers`` processes decode (0: in this process).
    """
    files, labels = index.split(split)
    train = split == "train"
    dataset = ImageFiles(index.root, files, labels, transforms(train, image_size))
    batches = TrainBatches(len(files), batch_size, seed) if train else EvalBatches(len(files), batch_size, seed,
                                                                                  shuffle_val)
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=pin_memory,
                                       persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)
