"""Provenance: every package that shapes a result is recorded with each run and each figure, and a
figure's footer names the commits that trained its runs (from their records), not the commit it
was plotted at."""
from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest

from impls.common import driver, provenance
from impls.common.aggregate import figure_finals
from impls.common.cli import TrainOptions
from impls.common.io import read_json
from impls.common.plotting import plot_figure, stamp
from tests.test_driver import CountingProgram, _job
from tests.test_figures import FIGURE, fake_table

#: what the issue names (and the frameworks): each shapes what a run or a figure shows
SHAPING = {"pandas", "matplotlib", "seaborn", "scikit-learn", "numpy", "scipy",
           "jax", "jaxlib", "flax", "optax", "torch", "torchvision"}
A, B, C, D, E = ("1a2b3c4" + "0" * 33, "5d6e7f8" + "1" * 33, "9a0b1c2" + "2" * 33, "aaaaaaa" + "3" * 33,
                 "bbbbbbb" + "4" * 33)


def final(commit, versions=None, device=None):
    """The provenance part of a final.json trained at ``commit`` (None: the record names none)."""
    prov = {"versions": versions or {"jax": "0.10.2"}, "device": device or {"framework": "jax", "backend": "cpu"},
            "host": "h", "slurm_job_id": None}
    if commit is not None:
        prov["git_commit"] = commit
    return {"status": "ok", "provenance": prov}


def record(finals, made=C):
    figure = {**FIGURE, "runs": {rid: {"impl_version": "1"} for rid in finals}}
    rec = provenance.figure_record(figure, finals)
    rec["made"]["git_commit"] = made
    return rec


def test_versions_name_every_package_that_shapes_a_result():
    versions = provenance.versions()
    assert SHAPING <= set(provenance.PACKAGES) and set(provenance.PACKAGES) <= set(versions)
    # this environment has them all: a recorded null would mean the lookup is wrong
    assert all(versions[name] for name in SHAPING), versions


def test_every_run_records_the_cpu_threads_it_trained_with_and_figures_group_runs_by_them(tmp_path, monkeypatch):
    """fig_wide_align_small_data at cpu scale: FA (n 45, width 32, lr 5, PyTorch) reached 26.7 % with one thread
    per train job and 24.4 % with two; the record must say which."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    job = _job(tmp_path, 1, epochs=1)
    driver.train(job, TrainOptions(tmp_path, 10.0, "cpu"), lambda j, o: CountingProgram([[1, 1]]))
    assert read_json(job.run_dirs[0] / "train.json")["provenance"]["threads"] == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert provenance.cpu_threads() is None
    one, two = final(A), final(A)
    one["provenance"]["threads"], two["provenance"]["threads"] = 1, 2
    groups = provenance.training_groups({"r1": one, "r2": two, "r3": two})
    assert [(g["threads"], g["run_ids"]) for g in groups] == [(2, ["r2", "r3"]), (1, ["r1"])]


def test_a_package_that_is_not_installed_is_recorded_as_null(monkeypatch):
    monkeypatch.setattr(provenance, "PACKAGES", ("numpy", "no-such-package-xyz"))
    versions = provenance.versions()
    assert versions["no-such-package-xyz"] is None and versions["numpy"]


def test_the_driver_records_the_packages_in_every_run(tmp_path):
    job = _job(tmp_path, 2, epochs=1)
    driver.train(job, TrainOptions(tmp_path, 10.0, "cpu"), lambda j, o: CountingProgram([[1, 1], [1, 1]]))
    for run_dir in job.run_dirs:
        prov = read_json(run_dir / "train.json")["provenance"]
        assert SHAPING | {"python"} <= set(prov["versions"])
        assert prov["versions"]["pandas"] == provenance.versions()["pandas"]
        assert prov["git_commit"] == provenance.git_commit()


@pytest.mark.parametrize("runs, expected", [
    ({"r1": A, "r2": A, "r3": B}, "trained at 1a2b3c4 (2 runs), 5d6e7f8 (1 run); plotted at 9a0b1c2"),
    ({"r1": B, "r2": A, "r3": A}, "trained at 1a2b3c4 (2 runs), 5d6e7f8 (1 run); plotted at 9a0b1c2"),
    ({"r1": A + "-dirty"}, "trained at 1a2b3c4-dirty (1 run); plotted at 9a0b1c2"),
    # runs whose record names no commit are said to be so, and only those
    ({"r1": A, "r2": None, "r3": "unknown"}, "trained at 1a2b3c4 (1 run), commit unknown (2 runs); plotted at 9a0b1c2"),
    # past three commits the rest are counted, the unknown ones still told apart
    ({"r1": A, "r2": A, "r3": B, "r4": C, "r5": D, "r6": E, "r7": None},
     "trained at 1a2b3c4 (2 runs), 5d6e7f8 (1 run), 9a0b1c2 (1 run), 2 more commits (2 runs), "
     "commit unknown (1 run); plotted at 9a0b1c2"),
])
def test_the_footer_names_the_training_commits_from_the_runs_records(runs, expected):
    assert provenance.footer_commits(record({rid: final(c) for rid, c in runs.items()})) == expected


def test_the_figure_record_groups_runs_by_what_trained_them():
    gpu = {"framework": "jax", "backend": "gpu"}
    rec = record({"r1": final(A), "r2": final(A), "r3": final(A, device=gpu), "r4": final(B, {"jax": "0.9"})})
    assert [(g["git_commit"], g["run_ids"]) for g in rec["trained"]] == [(A, ["r1", "r2"]), (A, ["r3"]), (B, ["r4"])]
    assert rec["trained"][1]["device"] == gpu and rec["trained"][2]["versions"] == {"jax": "0.9"}
    assert rec["impl_versions"] == ["1"] and rec["figure"] == FIGURE["target"]
    assert SHAPING <= set(rec["made"]["versions"])
    json.dumps(rec)   # written as JSON by the figure job


def footer(fig) -> str:
    return next(t.get_text() for t in fig.texts if t.get_text().startswith("creditbench "))


def test_the_footer_shows_the_training_commits_and_not_only_the_plotting_one(tmp_path):
    rec = record({"r1": final(A), "r2": final(A), "r3": final(B)})
    fig = stamp(plt.figure(), {**FIGURE, "provenance": rec})
    assert footer(fig) == ("creditbench fig_nodepert_test | scale=smoke | dataset=digits | "
                           "trained at 1a2b3c4 (2 runs), 5d6e7f8 (1 run); plotted at 9a0b1c2")
    plt.close(fig)
    # without a record (a plot made outside the figure job) the footer claims nothing about training
    fig = stamp(plt.figure(), FIGURE)
    assert footer(fig).endswith("; training commits not given") and "commit unknown" not in footer(fig)
    plt.close(fig)
    plot_figure(fake_table(), {**FIGURE, "provenance": rec, "plot": {"kind": "line", "x": "epoch", "y": "test_acc"}},
                tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 5_000


def test_figure_finals_reads_each_runs_final_json(tmp_path):
    runs = tmp_path / "nodepert" / "runs"
    for rid, commit in (("r1", A), ("r2", B)):
        (runs / rid).mkdir(parents=True)
        (runs / rid / "final.json").write_text(json.dumps(final(commit)))
    finals = figure_finals({"paper": "nodepert", "runs": {"r1": {}, "r2": {}}}, tmp_path)
    assert {rid: f["provenance"]["git_commit"] for rid, f in finals.items()} == {"r1": A, "r2": B}
