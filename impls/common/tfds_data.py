"""TensorFlow Datasets (TFDS) as a source of the datasets: prepare a TFDS data dir once, read a dataset
from it as the cached arrays, and index ``imagenet2012`` for streaming.

Callers: ``impls.common.datasets.prepare_dataset`` when config ``data.loader`` names ``tfds`` for a
dataset (the ``dataset`` rule), and users: ``python -m impls.common.tfds_data prepare NAME --data-dir DIR``
writes the TFDS dataset ``TFDS_NAMES[NAME]`` into DIR (an ``array_record`` dataset, which
``tfds.data_source`` reads by index without TensorFlow).

- Arrays in file order. TFDS stores a split's examples sorted by a salted md5 of their keys (TFDS's
  ``core.hashing``; the salt is the split name, and TFDS keeps it fixed within a dataset version).
  The builders of MNIST, Fashion-MNIST, KMNIST and CIFAR key each example by its index in the source
  files, which is the order torchvision reads them in, so ``file_order`` recomputes those hashes and
  reads the examples back in the files' order: the cached ``.npz`` equals the torchvision path's
  byte for byte (``tests/test_tfds_data.py`` checks it on Fashion-MNIST and digits). CIFAR's ``id``
  feature (``train_00042``) is checked against that order as it is read.
- Where the data come from when the TFDS dataset is missing (``ensure_prepared``): ``digits`` from
  scikit-learn (embedded); ``fashion_mnist`` from the IDX files of ``fashion_mnist_dir``; the others
  through TFDS's own builder and download, which needs the internet and TensorFlow; ``imagenet`` only
  from the archives a user downloaded (``--manual-dir``). Otherwise one ``DatasetUnavailable`` names
  the command that prepares it.

TFDS and grain are an optional extra (``requirements-tfds.txt``, ``make tfds``); nothing here is
imported unless a dataset is read through TFDS.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from impls.common.errors import DatasetUnavailable

LOADERS = ("torchvision", "tfds")
DEFAULT_LOADER = "torchvision"
DEFAULT_TFDS_DIR = "resources/tfds"
#: creditbench dataset name -> TFDS dataset name
TFDS_NAMES = {"digits": "creditbench_digits", "fashion_mnist": "fashion_mnist", "mnist": "mnist", "kmnist": "kmnist",
              "cifar10": "cifar10", "cifar100": "cifar100", "imagenet": "imagenet2012"}
INSTALL_EXTRA = "make tfds (or: pip install -c requirements.lock -r requirements-tfds.txt)"
_READ_CHUNK = 2048


def loader_of(data_config: dict, dataset: str) -> str:
    """The loader config ``data.loader`` gives ``dataset``: one name for every dataset, or a mapping
    dataset -> loader in which a dataset left out keeps the default (torchvision)."""
    loader = data_config.get("loader", DEFAULT_LOADER)
    if isinstance(loader, dict):
        return loader.get(dataset, DEFAULT_LOADER)
    return loader


def require_tfds():
    """The ``tensorflow_datasets`` module, or DatasetUnavailable saying how to install the extra. TFDS's
    progress bars and its log below errors are turned off: this project's messages say what happened."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DatasetUnavailable(f"data.loader tfds needs TensorFlow Datasets, which is not installed ({err}); "
                                 f"install the optional extra with `{INSTALL_EXTRA}`") from None
    logging.getLogger("absl").setLevel(logging.ERROR)
    tfds.disable_progress_bar()
    return tfds


def prepare_command(name: str, data_dir: str | Path) -> str:
    """The command that writes dataset ``name`` into the TFDS data dir ``data_dir``."""
    source = " --manual-dir DIR_WITH_ILSVRC2012_img_train.tar_AND_ILSVRC2012_img_val.tar" if name == "imagenet" else ""
    return f"python -m impls.common.tfds_data prepare {name} --data-dir {data_dir}{source}"


def _unprepared(name: str, data_dir: str | Path, why: str) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"{name} is not in the TFDS data dir {data_dir} ({why}); prepare it with `{prepare_command(name, data_dir)}` "
        f"(on a machine with the data or the internet) and copy {data_dir}/{TFDS_NAMES[name]} to this machine.")


def prepared_builder(name: str, data_dir: str | Path):
    """The TFDS builder of ``name`` over the dataset already written in ``data_dir`` (array_record);
    DatasetUnavailable naming the prepare command if it is not there or not randomly accessible."""
    tfds = require_tfds()
    if name not in TFDS_NAMES:
        raise ValueError(f"no TFDS source for dataset {name!r}; datasets with one: {', '.join(TFDS_NAMES)}")
    try:
        builder = tfds.builder(TFDS_NAMES[name], data_dir=str(data_dir))
    except tfds.core.DatasetNotFoundError:
        raise _unprepared(name, data_dir, "not found") from None
    if not builder.is_prepared():
        raise _unprepared(name, data_dir, f"no {builder.info.full_name}")
    file_format = str(builder.info.file_format.value if builder.info.file_format else "tfrecord")
    if file_format != "array_record":
        raise _unprepared(name, data_dir, f"it was written as {file_format}; random access needs array_record")
    return builder


def build(name: str, data_dir: str | Path, *, idx_dir: str | Path | None = None, manual_dir: str | Path | None = None,
          max_examples: int | None = None) -> str:
    """Write dataset ``name`` into the TFDS data dir ``data_dir``; return where it came from.

    ``digits``: scikit-learn. ``idx_dir`` (fashion_mnist, mnist, kmnist): the IDX files there.
    ``imagenet``: the archives in ``manual_dir``. Otherwise TFDS's own builder downloads the files
    (internet and TensorFlow needed). ``max_examples`` keeps the first n of each split (tests).
    TFDS writes into a temporary directory and renames it when complete, so a failed build leaves
    nothing that reads as prepared.
    """
    tfds = require_tfds()
    from impls.common import tfds_builders

    if name == "digits":
        builder, origin = tfds_builders.digits_builder(data_dir), "scikit-learn's embedded digits"
    elif idx_dir is not None and name in tfds_builders.IDX_DATASETS:
        builder, origin = tfds_builders.idx_builder(name, idx_dir, data_dir), f"the IDX files in {idx_dir}"
    elif name == "imagenet":
        if manual_dir is None:
            raise _unprepared(name, data_dir, "ImageNet is built only from the archives you downloaded: give --manual-dir")
        builder, origin = tfds_builders.imagenet_builder(manual_dir, data_dir), f"the archives in {manual_dir}"
    elif name in TFDS_NAMES:
        if importlib.util.find_spec("tensorflow") is None:
            raise _unprepared(name, data_dir, "TFDS's own builder, which downloads it, needs TensorFlow: "
                                              "pip install tensorflow-cpu==2.21.0 where you prepare it")
        builder = tfds.builder(TFDS_NAMES[name], data_dir=str(data_dir), file_format="array_record")
        origin = "a TFDS download"
    else:
        raise ValueError(f"no TFDS source for dataset {name!r}; datasets with one: {', '.join(TFDS_NAMES)}")
    config = tfds.download.DownloadConfig(max_examples_per_split=max_examples, try_download_gcs=False)
    try:
        builder.download_and_prepare(download_config=config)
    except (OSError, ValueError, AssertionError) as err:
        lines = str(err).strip().splitlines()
        raise _unprepared(name, data_dir, f"building it from {origin} failed: {type(err).__name__}: "
                                          f"{lines[0] if lines else ''}") from err
    return origin


def ensure_prepared(name: str, data_dir: str | Path, *, fashion_mnist_dir: str | Path, download: bool) -> None:
    """Build ``name`` in ``data_dir`` unless it is there, from what this machine has (module docstring)."""
    from impls.common.datasets import find_idx_files

    try:
        prepared_builder(name, data_dir)
        return
    except DatasetUnavailable as missing:
        if name == "digits":
            build(name, data_dir)
        elif name == "fashion_mnist" and find_idx_files(Path(fashion_mnist_dir)) is not None:
            build(name, data_dir, idx_dir=fashion_mnist_dir)
        elif download and name != "imagenet":
            build(name, data_dir)
        else:
            raise missing


def file_order(n: int, split: str) -> np.ndarray:
    """Where the example with key i (its index in the source files) sits in a TFDS split of ``n``
    examples keyed 0..n-1: TFDS writes examples sorted by the md5 of its salt (the split name) and
    the key."""
    from tensorflow_datasets.core import hashing

    hasher = hashing.Hasher(split)
    keys_on_disk = sorted(range(n), key=hasher.hash_key)
    order = np.empty(n, np.int64)
    order[keys_on_disk] = np.arange(n)
    return order


def read_split(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8; a single channel dropped, as torchvision's arrays have none) and labels (int64)
    of one split, in the order of the source files."""
    source = builder.as_data_source(split=split)
    order = file_order(len(source), split)
    images, labels = [], []
    for start in range(0, len(order), _READ_CHUNK):
        for i, record in enumerate(source.__getitems__(order[start:start + _READ_CHUNK].tolist()), start):
            if "id" in record and _text(record["id"]) != f"{split}_{i:05d}":
                raise ValueError(f"{builder.info.full_name} {split}: example {i} has id {_text(record['id'])!r}; "
                                 f"its TFDS keys are not the file indices this reader restores the order from")
            images.append(record["image"])
            labels.append(record["label"])
    x = np.stack(images).astype(np.uint8)
    return (x[..., 0] if x.shape[-1] == 1 else x), np.asarray(labels, np.int64)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_arrays(name: str, data_dir: str | Path) -> tuple[dict[str, np.ndarray], str]:
    """``x_train, y_train, x_test, y_test`` of ``name`` from the TFDS data dir, and a source line."""
    builder = prepared_builder(name, data_dir)
    arrays = {}
    for split in ("train", "test"):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = read_split(builder, split)
    return arrays, f"TFDS {builder.info.full_name} (array_record) in {Path(data_dir).resolve()}"


def prepare_imagenet_index(out_path: str | Path, data_dir: str | Path) -> dict[str, Any]:
    """Write ``out_path`` (.npz + .json sidecar): the TFDS ``imagenet2012`` dataset to stream (loader,
    name, data dir, class names, split sizes; no pixels), as ``impls.two_routes.imagenet_tfds`` reads it."""
    from impls.common.image_folder import write_index

    builder = prepared_builder("imagenet", data_dir)
    splits = builder.info.splits
    index = {"loader": np.array("tfds"), "tfds_name": np.array(builder.info.name),
             "data_dir": np.array(str(Path(data_dir).resolve())),
             "classes": np.array(builder.info.features["label"].names),
             "n_train": np.array(splits["train"].num_examples), "n_val": np.array(splits["validation"].num_examples)}
    return write_index(out_path, index, source=f"TFDS {builder.info.full_name} in {index['data_dir']} (pixels streamed)",
                       root=str(index["data_dir"]), n_train=int(index["n_train"]), n_val=int(index["n_val"]))


def main(argv: list[str] | None = None) -> int:
    """``python -m impls.common.tfds_data prepare NAME --data-dir DIR [...]``; exit 2 if unavailable."""
    parser = argparse.ArgumentParser(prog="python -m impls.common.tfds_data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write a dataset into a TFDS data dir (array_record)")
    prep.add_argument("name", choices=list(TFDS_NAMES))
    prep.add_argument("--data-dir", default=DEFAULT_TFDS_DIR, help=f"the TFDS data dir (default {DEFAULT_TFDS_DIR})")
    prep.add_argument("--idx-dir", default=None, help="fashion_mnist, mnist, kmnist: build from the IDX files here")
    prep.add_argument("--manual-dir", default=None,
                      help="imagenet: the directory with ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar")
    prep.add_argument("--max-examples", type=int, default=None, help="keep the first n examples of each split")
    args = parser.parse_args(argv)
    try:
        origin = build(args.name, args.data_dir, idx_dir=args.idx_dir, manual_dir=args.manual_dir,
                       max_examples=args.max_examples)
    except (DatasetUnavailable, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    builder = prepared_builder(args.name, args.data_dir)
    sizes = ", ".join(f"{split} {info.num_examples}" for split, info in builder.info.splits.items())
    print(f"wrote {builder.info.full_name} into {args.data_dir} from {origin}: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
