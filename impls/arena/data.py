"""The arena's data: a named dataset or the user's own ``.npz``, flattened, standardised, with a validation split.

- Inputs are flattened to (N, D) and standardised with the mean and standard deviation of all pixels
  of the training part (``impls.common.datasets.standardize``, "global"); labels are one-hot. The conv
  task takes the same numbers back in image form, (N, H, W, C) (``as_images``: grayscale (N, H, W)
  images get C = 1; CIFAR is stored (N, H, W, C)).
- The validation split is carved from the training set, never from the test set: a fixed permutation
  (``default_rng([0, 3])``, the same for every rule and seed) puts ``n_val`` training examples aside.
  Learning rates are chosen on it (``impls.arena.figures``); the test set is only reported.
- A user's own data (config ``arena_data: path/to/file.npz``) holds ``x_train``, ``y_train``, ``x_test``,
  ``y_test``; ``check_user_arrays`` refuses anything else with one message naming the array and the
  problem (missing or extra keys, shapes, dtypes, label range, non-finite values). Its dataset id is
  ``user-<first 12 hex digits of the file's sha256>``, so a changed file is a new dataset and new runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from impls.common.datasets import ARRAY_KEYS, file_sha256, load_dataset, standardize, write_cache
from impls.common.errors import SpecError

SPLIT_STREAM = (0, 3)
USER_PREFIX = "user-"


class ArenaData(NamedTuple):
    """Float32 inputs (N, D) and one-hot float32 targets (N, C) of the three splits, and int labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels_train: np.ndarray
    labels_val: np.ndarray
    labels_test: np.ndarray
    image_shape: tuple[int, ...] = ()

    @property
    def in_dim(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.y_train.shape[1])


def validation_split(n_train: int, n_val: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): ``n_val`` of ``n_train`` put aside by a fixed permutation."""
    if not 0 < n_val < n_train:
        raise SpecError(f"hparams.n_val is {n_val}; it must be at least 1 and below the {n_train} training examples")
    order = np.random.default_rng(SPLIT_STREAM).permutation(n_train)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def arena_arrays(x_train, y_train, x_test, y_test, n_val: int, n_classes: int | None = None) -> ArenaData:
    """Split, flatten, standardise (training-part statistics) and one-hot encode."""
    keep, val = validation_split(len(x_train), n_val)
    flat = lambda x: np.asarray(x).reshape(len(x), -1)   # noqa: E731
    x_fit, x_rest = standardize(flat(x_train[keep]), np.concatenate([flat(x_train[val]), flat(x_test)]), "global")
    x_val, x_te = x_rest[:len(val)], x_rest[len(val):]
    labels = [np.asarray(y, np.int64) for y in (y_train[keep], y_train[val], y_test)]
    c = int(n_classes if n_classes is not None else max(int(l.max()) for l in labels) + 1)
    eye = np.eye(c, dtype=np.float32)
    return ArenaData(x_fit, eye[labels[0]], x_val, eye[labels[1]], x_te, eye[labels[2]], *labels,
                     image_shape=tuple(np.shape(x_train)[1:]))


def as_images(data: ArenaData, where: str) -> ArenaData:
    """The same data with inputs (N, H, W, C) for the conv net; ``SpecError`` if the inputs are not images."""
    shape = tuple(data.image_shape)
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise SpecError(f"{where}: the conv net (model.arch: conv) takes images, (H, W) or (H, W, C) per example; "
                        f"this dataset's examples have shape {tuple(data.image_shape)}")
    image = lambda x: x.reshape(len(x), *shape)   # noqa: E731
    return data._replace(x_train=image(data.x_train), x_val=image(data.x_val), x_test=image(data.x_test),
                         image_shape=shape)


def load(spec: dict, datasets_dir: Path) -> ArenaData:
    """The arena data of a run spec: ``<datasets_dir>/<dataset>.npz`` (named or user-<sha>), split and prepared."""
    ds = load_dataset(Path(datasets_dir) / f"{spec['dataset']}.npz")
    return arena_arrays(ds.x_train, ds.y_train, ds.x_test, ds.y_test, int(spec["hparams"]["n_val"]), ds.num_classes)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The training examples' order in ``epoch`` (1-based) for runs of ``seed``: the same for every rule."""
    return np.random.default_rng([seed, 2, epoch]).permutation(n)


# ----------------------------------------------------------------------------- the user's own data

class ArenaDataError(SpecError):
    """A user's dataset file that the arena cannot train on (the message names the array and the problem)."""


def user_dataset_id(path: str | Path) -> str:
    """``user-<sha12>`` of a user's file, after checking its contents (``ArenaDataError`` otherwise)."""
    return user_dataset(path)[0]


def user_dataset(path: str | Path) -> tuple[str, tuple[int, ...]]:
    """(``user-<sha12>``, the shape of one example) of a user's file, after checking its contents."""
    path = Path(path)
    arrays = read_user_arrays(path)
    return USER_PREFIX + file_sha256(path)[:12], tuple(arrays["x_train"].shape[1:])


def read_user_arrays(path: Path) -> dict[str, np.ndarray]:
    """The four arrays of a user's ``.npz``, checked (``check_user_arrays``)."""
    where = f"arena_data {path}"
    if not path.is_file():
        raise ArenaDataError(f"{where}: no such file (config key arena_data names an .npz with "
                             f"{', '.join(ARRAY_KEYS)})")
    try:
        with np.load(path, allow_pickle=False) as handle:
            arrays = {k: handle[k] for k in handle.files}
    except Exception as err:   # zipfile/pickle/format errors all mean "not a readable .npz"
        raise ArenaDataError(f"{where}: not a readable .npz file ({type(err).__name__}: {err})") from None
    check_user_arrays(arrays, where)
    return arrays


def check_user_arrays(arrays: dict[str, np.ndarray], where: str) -> int:
    """Check a user's arrays; return the number of classes. Raises ``ArenaDataError`` naming the problem."""
    missing, extra = [k for k in ARRAY_KEYS if k not in arrays], sorted(set(arrays) - set(ARRAY_KEYS))
    if missing or extra:
        raise ArenaDataError(f"{where}: expected exactly the arrays {', '.join(ARRAY_KEYS)}; "
                             + "; ".join(p for p in (f"missing {', '.join(missing)}" if missing else "",
                                                     f"unexpected {', '.join(extra)}" if extra else "") if p))
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ArenaDataError(f"{where}: x_{split} has dtype {x.dtype}; inputs must be numbers (float or int)")
        if x.ndim < 2 or len(x) == 0:
            raise ArenaDataError(f"{where}: x_{split} has shape {x.shape}; expected (examples, features...) "
                                 f"with at least one example")
        if not np.issubdtype(y.dtype, np.integer):
            raise ArenaDataError(f"{where}: y_{split} has dtype {y.dtype}; labels must be integers 0..C-1")
        if y.shape != (len(x),):
            raise ArenaDataError(f"{where}: y_{split} has shape {y.shape} but x_{split} has {len(x)} examples; "
                                 f"expected labels of shape ({len(x)},)")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).reshape(len(x), -1).any(1).sum())
            raise ArenaDataError(f"{where}: x_{split} holds NaN or infinite values ({bad} examples)")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ArenaDataError(f"{where}: x_train examples have shape {arrays['x_train'].shape[1:]} but x_test "
                             f"examples {arrays['x_test'].shape[1:]}")
    labels = np.concatenate([arrays["y_train"], arrays["y_test"]])
    if labels.min() < 0:
        raise ArenaDataError(f"{where}: labels must be 0..C-1; the smallest is {int(labels.min())}")
    n_classes = int(arrays["y_train"].max()) + 1
    if n_classes < 2:
        raise ArenaDataError(f"{where}: y_train holds one class only; a classifier needs at least two")
    if int(arrays["y_test"].max()) >= n_classes:
        raise ArenaDataError(f"{where}: y_test has label {int(arrays['y_test'].max())}, which y_train never "
                             f"shows (its labels are 0..{n_classes - 1})")
    return n_classes


def prepare_user(path: str | Path, out: str | Path, expected_id: str | None = None) -> dict:
    """Cache a user's file as a dataset of ``impls.common.datasets`` (``<out>.npz`` + its ``.json``
    sidecar); ``expected_id`` (the planned ``user-<sha12>``) guards against a file changed since planning."""
    path, out = Path(path), Path(out)
    arrays = read_user_arrays(path)
    dataset_id = USER_PREFIX + file_sha256(path)[:12]
    if expected_id is not None and dataset_id != expected_id:
        raise ArenaDataError(f"arena_data {path}: the file changed since the workflow was planned ({expected_id} "
                             f"then, {dataset_id} now); run snakemake again")
    arrays = {k: np.ascontiguousarray(arrays[k]) for k in ARRAY_KEYS}
    arrays["y_train"], arrays["y_test"] = (arrays[k].astype(np.int64) for k in ("y_train", "y_test"))
    return write_cache(arrays, out, dataset_id, f"user file {path.resolve()}")


def main(argv: list[str] | None = None) -> int:
    """``python -m impls.arena.data prepare-user FILE OUT [--expect user-<sha12>]``; exit 2 on bad data."""
    parser = argparse.ArgumentParser(prog="python -m impls.arena.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare-user", help="check a user's .npz and cache it as resources/datasets/user-<sha>.npz")
    prep.add_argument("file", type=Path)
    prep.add_argument("out", type=Path)
    prep.add_argument("--expect", default=None, help="the dataset id the workflow planned (user-<sha12>)")
    args = parser.parse_args(argv)
    try:
        meta = prepare_user(args.file, args.out, args.expect)
    except ArenaDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {meta['n_train']} train / {meta['n_test']} test, inputs {tuple(meta['image_shape'])}, "
          f"{meta['num_classes']} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
