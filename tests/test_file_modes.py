"""Every file the project writes gets the mode the process umask asks for, and stays atomic.

One table lists every writer (all go through ``impls.common.io.atomic_output``); each is run under
umask 022 and 002 and must give 0644 and 0664, as ``open(path, "w")`` would, not mkstemp's 0600.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from impls.common import checkpoint, io, metrics  # noqa: E402
from impls.common.datasets import prepare_dataset  # noqa: E402
from impls.common.plotting import save_atomically  # noqa: E402


def _figure(path: Path) -> list[Path]:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_atomically(fig, path.with_suffix(".png"))
    save_atomically(fig, path.with_suffix(".pdf"))
    plt.close(fig)
    return [path.with_suffix(".png"), path.with_suffix(".pdf")]


def _checkpoint(path: Path) -> list[Path]:
    snapshot = checkpoint.Snapshot(epoch=1, run_ids=["r"], elapsed_s=1.0, history={"acc": np.zeros((2, 1))},
                                   diverged=np.array([-1]), stopped=np.array([-1]), state={"w": np.ones(3)})
    checkpoint.save(path.with_suffix(".npz"), snapshot)
    return [path.with_suffix(".npz")]


def _dataset_cache(path: Path) -> list[Path]:
    prepare_dataset("digits", path.with_suffix(".npz"))
    return [path.with_suffix(".npz"), path.with_suffix(".json")]


def _run_records(path: Path) -> list[Path]:
    metrics.write_metrics(path, {"test_acc": np.zeros((3, 1))[:, 0]}, 2)
    return [path / "metrics.csv"]


#: every kind of file the project writes: name -> writer(path) returning the files it wrote
WRITERS = {
    "bytes": lambda p: [io.atomic_write_bytes(p, b"\x00\x01")],
    "text": lambda p: [io.atomic_write_text(p, "a,b\n1,2\n")],
    "json": lambda p: [io.atomic_write_json(p, {"a": 1})],
    "json_if_changed": lambda p: (io.write_json_if_changed(p, {"a": 1}), [p])[1],
    "npz": lambda p: [io.atomic_write_npz(p, {"x": np.arange(3)})],
    "figure png+pdf": _figure,
    "checkpoint": _checkpoint,
    "dataset cache npz+json": _dataset_cache,
    "run metrics csv": _run_records,
}


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(saved)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
@pytest.mark.parametrize("writer", WRITERS)
def test_every_writer_honours_the_umask(tmp_path, umask, writer, mask, mode):
    umask(mask)
    written = WRITERS[writer](tmp_path / "out" / "file")
    assert written
    for path in written:
        assert _mode(Path(path)) == mode, f"{writer}: {path.name} is {oct(_mode(Path(path)))}, umask {oct(mask)}"
    assert not list((tmp_path / "out").glob(".tmp-*"))


def test_rewriting_a_file_takes_the_current_umask(tmp_path, umask):
    umask(0o077)
    path = io.atomic_write_text(tmp_path / "a.csv", "old\n")
    assert _mode(path) == 0o600
    umask(0o022)
    io.atomic_write_text(path, "new\n")
    assert _mode(path) == 0o644 and path.read_text() == "new\n"


def test_final_name_appears_only_complete(tmp_path, monkeypatch):
    """While the bytes are written the final name still holds the old content; the temporary file
    lies in the same directory (so ``os.replace`` is a rename, atomic) and is the one moved."""
    path = tmp_path / "table.csv"
    io.atomic_write_text(path, "old\n")
    seen = []
    real_replace = os.replace

    def watching_replace(src, dst):
        seen.append((Path(src).parent, Path(src).read_text(), Path(dst).read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", watching_replace)
    io.atomic_write_text(path, "new complete content\n")
    assert seen == [(tmp_path, "new complete content\n", "old\n")]
    assert path.read_text() == "new complete content\n"


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "fig.png"
    io.atomic_write_bytes(path, b"old")

    class Broken(Exception):
        pass

    with pytest.raises(Broken), io.atomic_output(path) as tmp:
        tmp.write_bytes(b"half")
        raise Broken
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_a_failed_figure_save_keeps_the_old_figure(tmp_path):
    path = tmp_path / "fig.png"
    path.write_bytes(b"old")
    fig = plt.figure()
    fig.savefig = lambda *a, **k: (_ for _ in ()).throw(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        save_atomically(fig, path)
    plt.close(fig)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_temporary_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    with io.atomic_output(tmp_path / "fig.pdf") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".tmp-fig-") and tmp.suffix == ".pdf"
        tmp.write_bytes(b"%PDF")
    assert (tmp_path / "fig.pdf").read_bytes() == b"%PDF"
