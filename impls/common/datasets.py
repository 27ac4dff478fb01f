"""Datasets: cached once as arrays (the ``dataset`` rule), then only loaded (the impls).

Caller: ``workflow/rules/data.smk`` runs ``python -m impls.common.datasets prepare NAME OUT``,
which writes ``OUT`` (an ``.npz`` with exactly ``x_train, y_train, x_test, y_test``) and the
sidecar ``OUT`` with suffix ``.json`` (name, source, sizes, image shape, classes, sha256s).
Impls call :func:`load_dataset` on that file, then :func:`take_subset` and :func:`standardize`.

Images are stored as uint8 in their native layout, (N, H, W) for grayscale and (N, H, W, C)
for CIFAR; labels are int64. Sources (README.md, "Datasets"):

- ``digits``         scikit-learn ``load_digits`` (embedded, no network): first 1300 images
                     train, remaining 497 test, pixels 0..16.
- ``fashion_mnist``  the IDX files of Debian's ``dataset-fashion-mnist`` package (or any dir
                     holding them, gzipped or not), else a torchvision download.
- ``mnist``, ``kmnist``, ``cifar10``, ``cifar100``  torchvision download (md5-checked).
- ``imagenet``       streamed, never cached as arrays: ``prepare imagenet OUT`` writes only an index
                     of an ImageFolder tree (file lists, labels, class names, the tree's root; no
                     pixels; :mod:`impls.common.image_folder`), which both two_routes and wide_align
                     stream from. The root is ``--imagenet-root``, else
                     ``$CREDITBENCH_IMAGENET_DIR``, else /data/imagenet.

With ``--loader tfds`` (config ``data.loader``) every name above is read from a TFDS data dir instead
(:mod:`impls.common.tfds_data`, the optional TFDS extra), giving the same arrays; ``imagenet`` is
then an index of the TFDS ``imagenet2012`` dataset.

A dataset that cannot be had raises :class:`DatasetUnavailable`, whose one-line message names
the command that fetches it. Nothing is written unless the whole dataset was read.
"""
from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import http.client
import io
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np

from impls.common.errors import DatasetUnavailable
from impls.common.image_folder import prepare_image_folder_index
from impls.common.io import atomic_write_bytes, atomic_write_json, load_npz, read_json

DATASET_NAMES = ("digits", "fashion_mnist", "mnist", "kmnist", "cifar10", "cifar100")
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
#: datasets too large to cache: ``prepare`` writes an index of the files and the impls stream them
STREAMED_DATASETS = ("imagenet",)
DIGITS_N_TRAIN = 1300  # digits split: first 1300 images train, the remaining 497 test

# Errors torchvision raises when offline, when files are missing/corrupt, or when a mirror fails.
_FETCH_ERRORS = (OSError, URLError, RuntimeError, EOFError, tarfile.TarError, http.client.HTTPException)
IDX_STEMS = {  # array key -> IDX file name without .gz (Fashion-MNIST's and MNIST's own names)
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_TORCHVISION_CLASSES = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST", "kmnist": "KMNIST",
                        "cifar10": "CIFAR10", "cifar100": "CIFAR100"}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Arrays of one cached dataset (uint8 images, int64 labels) and its sidecar ``meta``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    meta: dict[str, Any]

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])


# --------------------------------------------------------------------------- sources


def _fetch_command(name: str) -> str:
    return f"snakemake --cores 1 resources/datasets/{name}.npz"


def _short(exc: BaseException) -> str:
    """``Type: first line`` of an exception, so messages stay on one line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _torchvision_failure(exc: BaseException, download_dir: str | Path, download: bool) -> str:
    if download:
        return f"the torchvision download into {download_dir} failed ({_short(exc)})"
    return f"downloads are disabled and {download_dir} holds no complete torchvision copy"


def _load_digits() -> tuple[dict[str, np.ndarray], str]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)  # float 0..16 -> exact uint8, (1797, 8, 8)
    labels = bunch.target.astype(np.int64)
    n = DIGITS_N_TRAIN
    arrays = {"x_train": images[:n], "y_train": labels[:n], "x_test": images[n:], "y_test": labels[n:]}
    return arrays, "scikit-learn load_digits (embedded)"


def find_idx_files(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in ``directory`` (``.gz`` preferred), or None if any is missing."""
    found = {}
    for key, stem in IDX_STEMS.items():
        for candidate in (directory / f"{stem}.gz", directory / stem):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy array of its declared unsigned-byte shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX data type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header declares shape {shape}, file holds {data.size} bytes of data")
    return data.reshape(shape)


def _read_idx_dir(files: dict[str, Path]) -> dict[str, np.ndarray]:
    """Read IDX files with torchvision's own reader (it wants uncompressed paths)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    arrays = {}
    with tempfile.TemporaryDirectory(prefix="creditbench-idx-") as tmp:
        for key, src in files.items():
            path = src
            if src.suffix == ".gz":
                path = Path(tmp) / src.stem
                with gzip.open(src, "rb") as fin, open(path, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            reader = read_image_file if key.startswith("x") else read_label_file
            arrays[key] = reader(str(path)).numpy()
    return arrays


def _download_torchvision(name: str, download_dir: str | Path, download: bool) -> dict[str, np.ndarray]:
    """Train and test splits through torchvision (which checks md5s); errors propagate."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION_CLASSES[name])
    arrays = {}
    for split, train in (("train", True), ("test", False)):
        ds = cls(root=str(download_dir), train=train, download=download)
        # MNIST-like classes hold torch tensors, CIFAR numpy arrays (N, 32, 32, 3) and a list
        arrays[f"x_{split}"], arrays[f"y_{split}"] = (np.asarray(v.numpy() if hasattr(v, "numpy") else v)
                                                      for v in (ds.data, ds.targets))
    return arrays


def _load_fashion_mnist(fashion_mnist_dir: str | Path, download_dir: str | Path,
                        download: bool) -> tuple[dict[str, np.ndarray], str]:
    directory = Path(fashion_mnist_dir)
    files = find_idx_files(directory)
    if files is not None:
        try:
            return _read_idx_dir(files), f"IDX files in {directory}"
        except (_FETCH_ERRORS + (ValueError, AssertionError)) as exc:
            local = f"the IDX files in {directory} could not be read ({_short(exc)})"
    else:
        local = f"{directory} does not hold the four Fashion-MNIST IDX files"
    try:
        arrays = _download_torchvision("fashion_mnist", download_dir, download)
    except _FETCH_ERRORS as exc:
        raise DatasetUnavailable(
            f"Fashion-MNIST is unavailable: {local}, and {_torchvision_failure(exc, download_dir, download)}. "
            f"Install it with `sudo apt-get install dataset-fashion-mnist` "
            f"(IDX files in {DEFAULT_FASHION_MNIST_DIR}), or on a machine with internet run "
            f"`{_fetch_command('fashion_mnist')}` and copy resources/datasets/ over."
        ) from exc
    return arrays, "torchvision download (md5-checked)"


def _load_torchvision(name: str, download_dir: str | Path, download: bool) -> tuple[dict[str, np.ndarray], str]:
    try:
        arrays = _download_torchvision(name, download_dir, download)
    except _FETCH_ERRORS as exc:
        raise DatasetUnavailable(
            f"{name} is unavailable: {_torchvision_failure(exc, download_dir, download)}. "
            f"On a machine with internet run `{_fetch_command(name)}`, then copy "
            f"resources/datasets/{name}.npz and resources/datasets/{name}.json to this machine."
        ) from exc
    return arrays, "torchvision download (md5-checked)"


# --------------------------------------------------------------------------- prepare / load


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _array_sha256(array: np.ndarray) -> str:
    """sha256 of an array's raw bytes in C order (shape and dtype are recorded beside it)."""
    return _sha256(np.ascontiguousarray(array).tobytes())


def _canonical(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """uint8 images, int64 labels, consistent lengths -- or a ValueError."""
    out = {k: np.ascontiguousarray(np.asarray(arrays[k]).astype(np.uint8 if k[0] == "x" else np.int64))
           for k in ARRAY_KEYS}
    for split in ("train", "test"):
        if len(out[f"x_{split}"]) != len(out[f"y_{split}"]):
            raise ValueError(f"x_{split} and y_{split} differ in length")
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise ValueError("train and test images differ in shape")
    return out


def prepare_dataset(name: str, out_path: str | Path, *, fashion_mnist_dir: str | Path = DEFAULT_FASHION_MNIST_DIR,
                    download_dir: str | Path = "resources/downloads", download: bool = True,
                    imagenet_root: str | Path | None = None, loader: str = "torchvision",
                    tfds_dir: str | Path = "resources/tfds") -> dict[str, Any]:
    """Cache dataset ``name`` as ``out_path`` (.npz) plus its ``.json`` sidecar; return the sidecar.

    For a streamed dataset (``imagenet``) the .npz is the tree's index only (see
    :func:`impls.common.image_folder.prepare_image_folder_index`). ``loader="tfds"`` reads the
    dataset from the TFDS data dir ``tfds_dir`` instead, building it there first from what this
    machine has (:mod:`impls.common.tfds_data`): the same arrays, and for ``imagenet`` an index of
    the TFDS dataset.

    Raises ValueError for an unknown name and DatasetUnavailable when the data cannot be read
    or fetched; in either case nothing is written. Both files are written atomically, the
    sidecar first, so an existing ``.npz`` always has its sidecar.
    """
    if loader == "tfds":
        return _prepare_from_tfds(name, out_path, tfds_dir, fashion_mnist_dir=fashion_mnist_dir, download=download)
    if name in STREAMED_DATASETS:
        return prepare_image_folder_index(out_path, imagenet_root)
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; allowed names: {', '.join(DATASET_NAMES)}")
    out_path = Path(out_path)
    if name == "digits":
        arrays, source = _load_digits()
    elif name == "fashion_mnist":
        arrays, source = _load_fashion_mnist(fashion_mnist_dir, download_dir, download)
    else:
        arrays, source = _load_torchvision(name, download_dir, download)
    return write_cache(_canonical(arrays), out_path, name, source)


def _prepare_from_tfds(name: str, out_path: str | Path, tfds_dir: str | Path, *, fashion_mnist_dir: str | Path,
                       download: bool) -> dict[str, Any]:
    from impls.common import tfds_data

    tfds_data.ensure_prepared(name, tfds_dir, fashion_mnist_dir=fashion_mnist_dir, download=download)
    if name in STREAMED_DATASETS:
        return tfds_data.prepare_imagenet_index(out_path, tfds_dir)
    arrays, source = tfds_data.load_arrays(name, tfds_dir)
    return write_cache(_canonical(arrays), Path(out_path), name, source)


def write_cache(arrays: dict[str, np.ndarray], out_path: str | Path, name: str, source: str) -> dict[str, Any]:
    """Write ``arrays`` (``ARRAY_KEYS``) as the cached dataset ``out_path`` (.npz) and its ``.json``
    sidecar (name, source, sha256 of the file, sizes, image shape, classes = largest label + 1, and
    each array's shape, dtype and sha256); the sidecar first, so an existing .npz always has one."""
    out_path = Path(out_path)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    labels = np.concatenate([arrays["y_train"], arrays["y_test"]])
    meta = {
        "name": name, "source": source, "file": out_path.name, "sha256": _sha256(payload),
        "n_train": len(arrays["x_train"]), "n_test": len(arrays["x_test"]),
        "image_shape": list(arrays["x_train"].shape[1:]), "num_classes": int(labels.max()) + 1,
        "arrays": {k: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": _array_sha256(a)}
                   for k, a in arrays.items()},
    }
    sidecar = out_path.with_suffix(".json")
    atomic_write_json(sidecar, meta)
    try:
        atomic_write_bytes(out_path, payload)
    except BaseException:
        sidecar.unlink(missing_ok=True)
        raise
    return meta


def load_dataset(path: str | Path) -> Dataset:
    """Load a cached dataset after checking its sha256 against the sidecar.

    Missing file -> DatasetUnavailable naming the command that makes it; missing sidecar,
    checksum mismatch or wrong keys -> ValueError.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetUnavailable(f"dataset file {path} does not exist; create it with "
                                 f"`snakemake --cores 1 {path}`.")
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise ValueError(f"dataset {path} has no sidecar {sidecar}; delete {path} and rerun "
                         f"`snakemake --cores 1 {path}`.")
    meta = read_json(sidecar)
    actual = file_sha256(path)
    if actual != meta.get("sha256"):
        raise ValueError(f"dataset {path} fails its checksum: sha256 {actual} but the sidecar "
                         f"records {meta.get('sha256')}; the file is corrupt or was modified. Delete "
                         f"{path} and rerun `snakemake --cores 1 {path}`.")
    arrays = load_npz(path)
    if set(arrays) != set(ARRAY_KEYS):
        raise ValueError(f"dataset {path} holds arrays {sorted(arrays)}; expected exactly {list(ARRAY_KEYS)}")
    return Dataset(meta=meta, **arrays)


SUBSET_KINDS = ("first", "stratified")


def stratified_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded stratified draw of ``n`` examples: each class keeps its share
    (largest-remainder rounding, so the counts sum to ``n``), examples drawn without replacement."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / len(labels)
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def take_subset(ds: Dataset, n_train: int | None = None, n_test: int | None = None, *,
                how: str = "first", seed: int = 0) -> Dataset:
    """``n_train`` training and ``n_test`` test examples; None keeps all. ``how='first'``: the first
    n in file order; ``'stratified'``: a seeded stratified draw (class proportions kept, file order)."""
    if how not in SUBSET_KINDS:
        raise ValueError(f"subset {how!r} is not one of {', '.join(SUBSET_KINDS)}")

    def pick(n: int | None, x: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        if n is None:
            return x, y
        if not 0 < n <= len(x):
            raise ValueError(f"{what}={n} is outside 1..{len(x)} for dataset {ds.meta.get('name')!r}")
        if how == "first":
            return x[:n], y[:n]
        idx = stratified_indices(y, n, seed)
        return x[idx], y[idx]

    x_train, y_train = pick(n_train, ds.x_train, ds.y_train, "n_train")
    x_test, y_test = pick(n_test, ds.x_test, ds.y_test, "n_test")
    meta = {**ds.meta, "n_train": len(x_train), "n_test": len(x_test), "subset": how,
            "subset_of": {"n_train": len(ds.x_train), "n_test": len(ds.x_test)}}
    if how == "stratified":
        meta["subset_seed"] = seed
    return Dataset(x_train, y_train, x_test, y_test, meta)


def subset_for_spec(ds: Dataset, spec: dict) -> Dataset:
    """The subset a run spec's optional ``data`` block asks for (n_train, n_test, subset, subset_seed)."""
    data = spec.get("data", {})
    return take_subset(ds, data.get("n_train"), data.get("n_test"), how=data.get("subset", "first"),
                       seed=data.get("subset_seed", 0))


# --------------------------------------------------------------------------- preprocessing


def _moments(x: np.ndarray, per_channel: bool, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (float64) over all pixels, or per last-axis channel, without a float64 copy."""
    total = sq = 0.0
    count = 0
    for start in range(0, len(x), chunk):
        block = x[start:start + chunk].astype(np.float64)
        block = block.reshape(-1, block.shape[-1]) if per_channel else block.reshape(-1)
        total = total + block.sum(axis=0)
        sq = sq + np.square(block).sum(axis=0)
        count += block.shape[0]
    mean = np.asarray(total) / count
    std = np.sqrt(np.maximum(np.asarray(sq) / count - mean**2, 0.0))
    return mean, np.where(std > 0, std, 1.0)  # a constant input is centred, not divided by 0


def standardize(x_train: np.ndarray, x_test: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Float32 inputs normalised with training-set statistics.

    ``"global"``: one mean/std over all training pixels, images flattened to (N, D).
    ``"per_channel"``: mean/std per channel (last axis) over the training set; shape kept.
    ``"none"``: cast to float32 only; shape kept.
    """
    if mode == "none":
        return x_train.astype(np.float32), x_test.astype(np.float32)
    if mode not in ("global", "per_channel"):
        raise ValueError(f"unknown standardize mode {mode!r}; allowed: 'global', 'per_channel', 'none'")
    if mode == "per_channel" and x_train.ndim < 3:
        raise ValueError(f"per_channel needs (N, ..., C) images, got shape {x_train.shape}")
    mean, std = _moments(x_train, per_channel=(mode == "per_channel"))

    def apply(x: np.ndarray) -> np.ndarray:
        out = (x.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32)
        return out.reshape(len(x), -1) if mode == "global" else out

    return apply(x_train), apply(x_test)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``python -m impls.common.datasets prepare NAME OUT [...]``; exit 2 if unavailable."""
    parser = argparse.ArgumentParser(prog="python -m impls.common.datasets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="cache a dataset as .npz + .json sidecar")
    prep.add_argument("name", choices=DATASET_NAMES + STREAMED_DATASETS)
    prep.add_argument("out", type=Path, help="output .npz (sidecar: same path with .json)")
    prep.add_argument("--fashion-mnist-dir", default=DEFAULT_FASHION_MNIST_DIR)
    prep.add_argument("--download-dir", default="resources/downloads")
    prep.add_argument("--no-download", action="store_true", help="use only files already on disk")
    prep.add_argument("--imagenet-root", default=None,
                      help="imagenet: the ImageFolder tree (default $CREDITBENCH_IMAGENET_DIR, else /data/imagenet)")
    prep.add_argument("--loader", choices=("torchvision", "tfds"), default="torchvision",
                      help="tfds: read the dataset from the TFDS data dir --tfds-dir (the optional TFDS extra)")
    prep.add_argument("--tfds-dir", default="resources/tfds", help="the TFDS data dir of --loader tfds")
    args = parser.parse_args(argv)
    try:
        meta = prepare_dataset(args.name, args.out, fashion_mnist_dir=args.fashion_mnist_dir,
                               download_dir=args.download_dir, download=not args.no_download,
                               imagenet_root=args.imagenet_root, loader=args.loader, tfds_dir=args.tfds_dir)
    except DatasetUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if meta.get("streamed"):
        print(f"wrote {args.out}: {meta['source']}, {meta['n_train']} train / {meta['n_val']} val images, "
              f"{meta['num_classes']} classes")
        return 0
    print(f"wrote {args.out}: {meta['name']} from {meta['source']}, {meta['n_train']} train / "
          f"{meta['n_test']} test, images {tuple(meta['image_shape'])}, {meta['num_classes']} classes, "
          f"sha256 {meta['sha256'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
