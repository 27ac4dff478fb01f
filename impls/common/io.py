"""Atomic writes: a file is either absent or complete, never half-written.

Every writer puts its bytes in a temporary file in the destination directory and
``os.replace``s it into place, which is atomic on POSIX file systems. A job killed
mid-write leaves at most a stray ``.tmp-*`` file, never a truncated output.

Files get the mode a plain ``open(path, "w")`` would give them: 0666 less the process umask
(0644 under umask 022, 0664 under 002), so a group on a shared file system can read results,
runs and caches. ``tempfile.mkstemp`` would make every output 0600, hence ``atomic_output``.
"""
from __future__ import annotations

import io
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np


def _create_temporary_beside(path: Path) -> Path:
    """Create an empty, new file ``.tmp-<stem>-<random><suffix>`` in ``path``'s directory.

    Opened with ``O_EXCL`` (never an existing file) and mode 0666, which the kernel reduces by the
    umask (and a default ACL of the directory) exactly as for ``open(path, "w")``. The suffix is
    kept because some writers (matplotlib's ``savefig``) choose the format from it.
    """
    for _ in range(100):
        tmp = path.with_name(f".tmp-{path.stem}-{secrets.token_hex(4)}{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path} after 100 tries")


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; it replaces ``path`` when the block
    ends without an exception and is deleted otherwise (parents of ``path`` are created).

    Every file the project writes goes through here, so all are atomic and honour the umask:
    ``with atomic_output(png) as tmp: fig.savefig(tmp)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents are created), flushed to disk."""
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays (and nested containers) into plain JSON types."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def json_text(obj: Any) -> str:
    """The text ``atomic_write_json`` writes for ``obj``."""
    return json.dumps(to_jsonable(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json_text(obj))


def write_json_if_changed(path: str | os.PathLike, obj: Any) -> bool:
    """Write ``obj`` to ``path`` (atomically) unless the file already holds exactly that text, so
    that an unchanged file keeps its mtime. Returns whether it wrote."""
    text = json_text(obj)
    try:
        if Path(path).read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)
    return True


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def atomic_write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Save arrays (no pickled objects) to ``path`` atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buffer.getvalue())


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file; pickled objects are refused."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
