"""The one checkpoint format of every train job, JAX or PyTorch: arrays saved with their structure.

Caller: ``impls.common.driver`` (save at an epoch end, load when a killed job restarts).

A checkpoint is one ``.npz`` (no pickles). Its program state is a tree of dicts, lists/tuples,
``None`` and arrays (numpy, JAX or torch tensors); it is stored leaf by leaf under its path
(``state/params/0/w``) together with a JSON ``layout`` that records every path, shape and
dtype. Loading compares that layout with the layout of the freshly initialised program it is
loaded into: any difference -- a missing or extra path, another shape or dtype, other runs, other
metrics -- is refused with one ``CheckpointMismatch`` naming the file and the first difference.
Nothing is ever restored by position.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from impls.common.io import atomic_write_npz, load_npz

LAYOUT_KEY = "__layout__"


class CheckpointMismatch(Exception):
    """A checkpoint exists but belongs to another program, batch or version of the code."""


@dataclass
class Snapshot:
    """What a train job needs to continue: the epoch reached and everything that evolves with it."""

    epoch: int
    run_ids: list[str]
    elapsed_s: float
    history: dict[str, np.ndarray]   # metric -> (epochs + 1, runs)
    diverged: np.ndarray             # per run: epoch of divergence, -1 = none
    stopped: np.ndarray              # per run: epoch of an early stop, -1 = none
    state: Any                       # the program's state tree


def as_array(leaf: Any) -> np.ndarray:
    """numpy, JAX and (CPU or GPU) torch leaves as numpy arrays."""
    if hasattr(leaf, "detach"):  # torch.Tensor, without importing torch
        leaf = leaf.detach().cpu().numpy()
    return np.asarray(leaf)


def flatten(tree: Any, prefix: str = "state") -> tuple[dict[str, np.ndarray], Any]:
    """``tree`` -> (arrays by path, layout). The layout mirrors the tree with each leaf replaced by
    ``{"path", "shape", "dtype"}``; dicts need string keys."""
    arrays: dict[str, np.ndarray] = {}

    def walk(node: Any, path: str) -> Any:
        if node is None:
            return None
        if isinstance(node, Mapping):
            for key in node:
                if not isinstance(key, str) or "/" in key:
                    raise TypeError(f"checkpoint state: key {key!r} under {path!r} is not a plain string")
            return {"dict": {k: walk(v, f"{path}/{k}") for k, v in node.items()}}
        if isinstance(node, (list, tuple)):
            return {"list": [walk(v, f"{path}/{i}") for i, v in enumerate(node)]}
        array = as_array(node)
        if array.dtype == object:
            raise TypeError(f"checkpoint state: {path!r} is not an array ({type(node).__name__})")
        arrays[path] = array
        return {"path": path, "shape": list(array.shape), "dtype": str(array.dtype)}

    return arrays, walk(tree, prefix)


def unflatten(layout: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """Inverse of ``flatten`` (tuples come back as lists)."""
    if layout is None:
        return None
    if "dict" in layout:
        return {k: unflatten(v, arrays) for k, v in layout["dict"].items()}
    if "list" in layout:
        return [unflatten(v, arrays) for v in layout["list"]]
    return arrays[layout["path"]]


def first_difference(saved: Any, expected: Any, path: str = "state") -> str | None:
    """Where two layouts differ, in words, or None when they are the same."""
    if saved is None or expected is None:
        return None if saved is expected else f"{path} is {'empty' if saved is None else 'set'} in the file but " \
                                                f"{'empty' if expected is None else 'set'} here"
    kind_saved, kind_expected = next(iter(saved)), next(iter(expected))
    if kind_saved != kind_expected:
        return f"{path} is a {kind_saved} in the file but a {kind_expected} here"
    if kind_saved == "dict":
        a, b = saved["dict"], expected["dict"]
        if set(a) != set(b):
            missing, extra = sorted(set(b) - set(a)), sorted(set(a) - set(b))
            return f"{path} has keys {extra} that this program lacks" if extra else f"{path} lacks keys {missing}"
        return next((d for k in b if (d := first_difference(a[k], b[k], f"{path}/{k}"))), None)
    if kind_saved == "list":
        a, b = saved["list"], expected["list"]
        if len(a) != len(b):
            return f"{path} has {len(a)} entries in the file but {len(b)} here"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := first_difference(x, y, f"{path}/{i}"))), None)
    for field in ("shape", "dtype"):
        if saved[field] != expected[field]:
            return f"{path} has {field} {saved[field]} in the file but {expected[field]} here"
    return None


def save(path: Path, snapshot: Snapshot) -> None:
    """Write ``snapshot`` atomically: a kill leaves the previous checkpoint or this one, never half."""
    arrays, layout = flatten(snapshot.state)
    arrays.update({f"history/{k}": np.asarray(v) for k, v in snapshot.history.items()})
    meta = {"epoch": snapshot.epoch, "run_ids": list(snapshot.run_ids), "elapsed_s": snapshot.elapsed_s,
            "metrics": list(snapshot.history), "state": layout}
    arrays.update({"diverged": np.asarray(snapshot.diverged, np.int64), "stopped": np.asarray(snapshot.stopped, np.int64),
                   LAYOUT_KEY: np.asarray(json.dumps(meta))})
    atomic_write_npz(path, arrays)


def load(path: Path, run_ids: list[str], metric_names: list[str], template_state: Any) -> Snapshot | None:
    """The checkpoint at ``path``, checked against what the job is about to train; None if there is none.

    Raises ``CheckpointMismatch`` (naming ``path`` and the first difference) when it was written for
    other runs, other metrics or a program state of another structure.
    """
    if not os.path.exists(path):
        return None
    try:
        data = load_npz(path)
        meta = json.loads(str(data[LAYOUT_KEY]))
    except (KeyError, ValueError, OSError) as err:
        raise CheckpointMismatch(f"{path}: not a creditbench checkpoint ({err}); delete it to restart this batch") \
            from None
    _, expected = flatten(template_state)
    if meta["run_ids"] != list(run_ids):
        problem = f"it holds runs {meta['run_ids']}, this batch trains {list(run_ids)}"
    elif meta["metrics"] != list(metric_names):
        problem = f"it records metrics {meta['metrics']}, this program records {list(metric_names)}"
    else:
        problem = first_difference(meta["state"], expected)
    if problem:
        raise CheckpointMismatch(f"{path} does not match the program it would resume: {problem}; "
                                 f"delete it to restart this batch from epoch 0")
    return Snapshot(epoch=int(meta["epoch"]), run_ids=meta["run_ids"], elapsed_s=float(meta["elapsed_s"]),
                    history={k: data[f"history/{k}"].copy() for k in meta["metrics"]},
                    diverged=data["diverged"].copy(), stopped=data["stopped"].copy(),
                    state=unflatten(meta["state"], data))
