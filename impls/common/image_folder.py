"""ImageNet as an index of an ImageFolder tree: file lists and labels, never pixels.

Caller: ``python -m impls.common.datasets prepare imagenet OUT`` (the generic ``dataset`` rule,
``snakemake resources/datasets/imagenet.npz``) calls :func:`prepare_image_folder_index`, which writes
``OUT`` (an ``.npz`` with exactly ``classes, root, train_files, train_labels, val_files, val_labels``)
and the sidecar ``OUT`` with suffix ``.json`` (root, counts, sha256). The impls that stream ImageNet
(``impls.two_routes.imagenet``, ``impls.wide_align.imagenet``) read that index and decode the files
batch by batch.

The tree is ROOT/train/<class>/* and ROOT/val/<class>/* (:func:`image_folder_layout`); ROOT is the
explicit root, else ``$CREDITBENCH_IMAGENET_DIR``, else :data:`DEFAULT_IMAGENET_DIR`
(:func:`resolve_imagenet_root`). A missing or malformed tree raises
:class:`~impls.common.errors.DatasetUnavailable` naming the path and the expected layout, and
nothing is written.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from impls.common.errors import DatasetUnavailable
from impls.common.io import atomic_write_bytes, atomic_write_json

DEFAULT_IMAGENET_DIR = "/data/imagenet"
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


def image_folder_layout(root: str | Path) -> str:
    """The layout an ImageFolder tree must have, for error messages."""
    return (f"{root}/train/<class>/*.JPEG and {root}/val/<class>/*.JPEG (ILSVRC-2012 with the validation "
            f"images sorted into the same class folders; .jpeg/.jpg/.png accepted)")


def resolve_imagenet_root(explicit: str | Path | None = None) -> Path:
    """``explicit``, else ``$CREDITBENCH_IMAGENET_DIR``, else ``DEFAULT_IMAGENET_DIR``."""
    return Path(explicit or os.environ.get("CREDITBENCH_IMAGENET_DIR") or DEFAULT_IMAGENET_DIR)


def index_image_folder(root: str | Path) -> dict[str, np.ndarray]:
    """File lists and labels of ROOT/{train,val}/<class>/* (no pixels).

    Classes are the sorted train folder names (label = position); files are sorted within a
    class, paths relative to ROOT. A val folder whose class has no train folder, a missing
    split or an empty split raises DatasetUnavailable naming the path and the expected layout.
    """
    root = Path(root)
    missing = [str(root / split) for split in ("train", "val") if not (root / split).is_dir()]
    if missing:
        raise DatasetUnavailable(f"ImageNet tree not found: {' and '.join(missing)} "
                                 f"{'is not a directory' if len(missing) == 1 else 'are not directories'}. Expected layout: "
                                 f"{image_folder_layout(root)}. Point $CREDITBENCH_IMAGENET_DIR (or --imagenet-root) "
                                 f"at the tree.")
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    unknown = sorted(d.name for d in (root / "val").iterdir() if d.is_dir() and d.name not in classes)
    if unknown:
        raise DatasetUnavailable(f"{root / 'val'} has class folders without a train folder ({', '.join(unknown[:5])}); "
                                 f"expected layout: {image_folder_layout(root)}")
    out = {"classes": np.array(classes), "root": np.array(str(root.resolve()))}
    for split in ("train", "val"):
        files, labels = [], []
        for label, name in enumerate(classes):
            folder = root / split / name
            names = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS) \
                if folder.is_dir() else []
            files += [f"{split}/{name}/{n}" for n in names]
            labels += [label] * len(names)
        if not files:
            raise DatasetUnavailable(f"{root / split} holds no images; expected layout: {image_folder_layout(root)}")
        out[f"{split}_files"], out[f"{split}_labels"] = np.array(files), np.array(labels, np.int32)
    return out


def prepare_image_folder_index(out_path: str | Path, root: str | Path | None = None) -> dict[str, Any]:
    """Write the index of an ImageFolder tree as ``out_path`` (.npz) plus its ``.json`` sidecar; return the sidecar.

    Keys: classes, root, train_files, train_labels, val_files, val_labels (the index both
    two_routes and wide_align stream from). Nothing is written when the tree is missing
    (DatasetUnavailable).
    """
    root = resolve_imagenet_root(root)
    index = index_image_folder(root)
    return write_index(out_path, index, source=f"index of the ImageFolder tree {index['root']} (pixels streamed)",
                       root=str(index["root"]), n_train=len(index["train_files"]), n_val=len(index["val_files"]))


def write_index(out_path: str | Path, index: dict[str, np.ndarray], *, source: str, root: str, n_train: int,
                n_val: int) -> dict[str, Any]:
    """Write a streamed dataset's ``index`` as ``out_path`` (.npz) and its ``.json`` sidecar (name imagenet,
    source, sha256, root, sizes, classes), both atomically, the sidecar first; return the sidecar."""
    out_path = Path(out_path)
    buffer = io.BytesIO()
    np.savez(buffer, **index)
    payload = buffer.getvalue()
    meta = {"name": "imagenet", "source": source, "file": out_path.name, "sha256": hashlib.sha256(payload).hexdigest(),
            "root": root, "n_train": n_train, "n_val": n_val, "num_classes": len(index["classes"]), "streamed": True}
    atomic_write_json(out_path.with_suffix(".json"), meta)
    atomic_write_bytes(out_path, payload)
    return meta
