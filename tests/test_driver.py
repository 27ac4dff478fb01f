"""The common training driver, its checkpoint format and the batch rules of the train entry.

The driver is exercised with a tiny numpy program (no JAX, no PyTorch): every paper's program
goes through the same loop, so what holds here holds for all of them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from impls.common import checkpoint, driver
from impls.common import specs as speclib
from impls.common.cli import BatchJob, TrainOptions, load_batch
from impls.common.errors import SpecError
from impls.common.io import read_json
from impls.common.metrics import read_metrics
from tests.test_nodepert_train import impl, make_specs, write_batch


class CountingProgram(driver.BatchProgram):
    """Run i's "loss" after epoch e is losses[i][e]; its test accuracy is 10·e."""

    metric_names = ["train_loss", "test_loss", "test_acc"]

    def __init__(self, losses, stop_at_acc=None):
        self.losses = np.asarray(losses, float)
        self.stop_at_acc = stop_at_acc
        self.w = np.zeros((len(losses), 3))
        self.trained = []

    def evaluate(self):
        return {"train_loss": self.losses[:, 0], "test_loss": self.losses[:, 0], "test_acc": np.zeros(len(self.w))}

    def train_epoch(self, progress):
        self.trained.append(progress.epoch)
        self.w += 1
        e = progress.epoch
        return {"train_loss": self.losses[:, e], "test_loss": self.losses[:, e],
                "test_acc": np.full(len(self.w), 10.0 * e)}

    def stopped(self, progress):
        if self.stop_at_acc is None:
            return super().stopped(progress)
        return progress.history["test_acc"][progress.epoch] >= self.stop_at_acc

    def state(self):
        return {"w": self.w, "nested": [None, {"k": np.arange(3)}]}

    def load_state(self, state):
        self.w = state["w"]

    def run_files(self, i):
        return {"params.npz": {"w": self.w[i]}}

    def device(self):
        return {"framework": "numpy", "backend": "cpu"}


def _job(tmp_path, n_runs, epochs) -> BatchJob:
    ids = tuple(f"r{i}" for i in range(n_runs))
    specs = tuple({"epochs": epochs, "seed": i} for i in range(n_runs))
    batch_dir = tmp_path / "batches" / "b"
    batch_dir.mkdir(parents=True)
    return BatchJob("toy", "b", batch_dir, ids, specs, tuple(tmp_path / "runs" / r for r in ids))


def test_records_diverged_and_stopped_runs_up_to_their_last_epoch(tmp_path):
    losses = [[1, 1, 1, 1, 1], [1, 1, np.nan, 1, 1], [1, 1, 1, 1, 1]]
    job = _job(tmp_path, 3, epochs=4)
    program = CountingProgram(losses, stop_at_acc=30.0)
    driver.train(job, TrainOptions(tmp_path, 10.0, "cpu"), lambda j, o: program)
    records = [read_json(d / "train.json") for d in job.run_dirs]
    assert [r["status"] for r in records] == ["ok", "diverged", "ok"]
    assert records[1]["diverged_epoch"] == 2 and records[1]["epochs_completed"] == 2
    # runs 0 and 2 stop early at epoch 3 (test accuracy 30): every run has ended, the loop stops
    assert program.trained == [1, 2, 3] and records[0]["epochs_completed"] == 3
    assert read_metrics(job.run_dirs[1])["epoch"].max() == 2
    assert read_metrics(job.run_dirs[0])["epoch"].max() == 3
    assert np.load(job.run_dirs[0] / "params.npz")["w"].tolist() == [3, 3, 3]
    assert read_json(job.run_dirs[0] / "spec.json") == job.specs[0]
    assert not (job.batch_dir / driver.CHECKPOINT_FILE).exists()


def test_checkpoint_round_trip_keeps_the_structure(tmp_path):
    state = {"params": [{"w": np.ones((2, 3), np.float32), "b": np.zeros(2)}], "carry": None,
             "gens": [np.arange(4, dtype=np.uint8)]}
    path = tmp_path / "checkpoint.npz"
    history = {"test_acc": np.arange(6.0).reshape(3, 2)}
    checkpoint.save(path, checkpoint.Snapshot(2, ["a", "b"], 1.5, history, np.array([-1, 2]), np.array([-1, -1]),
                                              state))
    back = checkpoint.load(path, ["a", "b"], ["test_acc"], state)
    assert back.epoch == 2 and back.elapsed_s == 1.5 and back.diverged.tolist() == [-1, 2]
    assert back.state["carry"] is None and back.state["params"][0]["w"].dtype == np.float32
    np.testing.assert_array_equal(back.state["params"][0]["w"], state["params"][0]["w"])
    np.testing.assert_array_equal(back.history["test_acc"], history["test_acc"])


@pytest.mark.parametrize("change, words", [
    (lambda s: {**s, "params": [{"w": np.ones((2, 4), np.float32), "b": np.zeros(2)}]},
     "state/params/0/w has shape [2, 3] in the file but [2, 4] here"),
    (lambda s: {**s, "params": [{"w": np.ones((2, 3), np.float64), "b": np.zeros(2)}]}, "dtype float32"),
    (lambda s: {**s, "extra": np.zeros(1)}, "state lacks keys ['extra']"),
    (lambda s: {k: v for k, v in s.items() if k != "carry"}, "keys ['carry'] that this program lacks"),
    (lambda s: {**s, "params": []}, "state/params has 1 entries in the file but 0 here"),
])
def test_a_checkpoint_of_another_program_is_refused_by_name(tmp_path, change, words):
    state = {"params": [{"w": np.ones((2, 3), np.float32), "b": np.zeros(2)}], "carry": None}
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, checkpoint.Snapshot(1, ["a"], 0.0, {"x": np.zeros((2, 1))}, np.array([-1]),
                                              np.array([-1]), state))
    with pytest.raises(checkpoint.CheckpointMismatch) as err:
        checkpoint.load(path, ["a"], ["x"], change(state))
    assert str(path) in str(err.value) and words in str(err.value)
    with pytest.raises(checkpoint.CheckpointMismatch, match="it holds runs"):
        checkpoint.load(path, ["b"], ["x"], state)
    with pytest.raises(checkpoint.CheckpointMismatch, match="records metrics"):
        checkpoint.load(path, ["a"], ["y"], state)


def test_resume_continues_from_the_checkpoint(tmp_path, monkeypatch):
    """A job stopped after epoch 2 resumes at epoch 3 with the saved state, history and statuses."""
    losses = [[1, 1, 1, 1, 1], [1, np.inf, 1, 1, 1]]
    whole = _job(tmp_path / "whole", 2, epochs=4)
    driver.train(whole, TrainOptions(tmp_path, 10.0, "cpu"), lambda j, o: CountingProgram(losses))

    cut = _job(tmp_path / "cut", 2, epochs=4)
    first = CountingProgram(losses)
    saved = []

    def stop_after_second_save(self, epoch):
        saved.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt  # what a kill looks like from the loop's point of view

    monkeypatch.setattr(driver.CheckpointClock, "saved", stop_after_second_save)
    with pytest.raises(KeyboardInterrupt):
        driver.train(cut, TrainOptions(tmp_path, 0.0, "cpu"), lambda j, o: first)
    monkeypatch.undo()
    assert (cut.batch_dir / driver.CHECKPOINT_FILE).exists() and not (cut.run_dirs[0] / "train.json").exists()
    second = CountingProgram(losses)
    driver.train(cut, TrainOptions(tmp_path, 10.0, "cpu"), lambda j, o: second)
    assert second.trained == [3, 4]
    for a, b in zip(whole.run_dirs, cut.run_dirs):
        assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
        assert np.array_equal(np.load(a / "params.npz")["w"], np.load(b / "params.npz")["w"])
        ra, rb = read_json(a / "train.json"), read_json(b / "train.json")
        assert (ra["status"], ra["diverged_epoch"], ra["epochs_completed"]) == (
            rb["status"], rb["diverged_epoch"], rb["epochs_completed"])


def test_a_program_metric_outside_its_names_is_an_error(tmp_path):
    class Sloppy(CountingProgram):
        def train_epoch(self, progress):
            return {**super().train_epoch(progress), "typo_acc": np.zeros(1)}

    with pytest.raises(KeyError, match="typo_acc"):
        driver.train(_job(tmp_path, 1, 2), TrainOptions(tmp_path, 10.0, "cpu"), lambda j, o: Sloppy([[1, 1, 1]]))


def test_a_batch_differing_outside_batch_over_is_refused(tmp_path, datasets_dir):
    runs = make_specs(lrs=(0.05,))
    (rid, spec), = runs.items()
    other = speclib.validate_spec({**spec, "hparams": {**spec["hparams"], "sigma": 1e-3}})
    runs[speclib.run_id(other)] = other
    batch = write_batch(tmp_path / "results", runs)
    done = impl("train", batch, datasets_dir)
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert "differ in 'hparams.sigma' (0.0001 vs 0.001)" in line and "batch_over ['seed', 'hparams.lr']" in line
    assert not (tmp_path / "results" / "nodepert" / "runs").exists()


def test_batch_over_keys_may_differ(tmp_path):
    runs = make_specs(lrs=(0.05, 0.1), seeds=(0, 1))
    batch = write_batch(tmp_path / "results", runs)
    job = load_batch(batch, tmp_path / "results" / "nodepert", ["seed", "hparams.lr"])
    assert len(job.run_ids) == 4
    with pytest.raises(SpecError, match="differ in 'hparams.lr'"):
        load_batch(batch, tmp_path / "results" / "nodepert", ["seed"])


def test_a_hand_edited_spec_json_is_refused_before_training_or_evaluating(tmp_path):
    runs = make_specs(lrs=(0.05, 0.1))
    batch = write_batch(tmp_path / "results", runs)
    results = tmp_path / "results" / "nodepert"
    (rid, spec), (other, _) = runs.items()
    path = results / "runs" / rid / "spec.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(spec))
    assert load_batch(batch, results).run_ids == (rid, other)      # the record as the driver writes it
    path.write_text(json.dumps({**spec, "seed": 7}))
    with pytest.raises(SpecError) as err:
        load_batch(batch, results)
    assert str(err.value).startswith(f"{path}: key 'seed' is 7 there but 0 in the spec of run '{rid}'")


def test_a_batch_planned_for_another_implementation_version_is_refused(tmp_path, monkeypatch):
    import impls.nodepert

    batch = write_batch(tmp_path / "results", make_specs(lrs=(0.05,)))
    monkeypatch.setattr(impls.nodepert, "IMPL_VERSION", "2")
    with pytest.raises(SpecError, match="key 'impl_version' is '1' but impls/nodepert is at IMPL_VERSION '2'"):
        load_batch(batch, tmp_path / "results" / "nodepert")


def test_every_paper_entry_is_one_impl_declaration():
    """No __main__ parses argv: each is one main(Impl(...)) whose program and evaluate hook exist."""
    import ast

    from impls.common.cli import Impl

    for main_py in sorted(Path(speclib.REPO_ROOT, "impls").glob("*/__main__.py")):
        text = main_py.read_text()
        assert "sys.argv" not in text and "argv[" not in text, main_py
        calls = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Impl"]
        assert len(calls) == 1, main_py
        impl = Impl(**{k.arg: ast.literal_eval(k.value) for k in calls[0].keywords})
        for target in filter(None, (impl.program, impl.evaluate)):
            module, _, name = target.partition(":")
            source = Path(speclib.REPO_ROOT, *module.split(".")).with_suffix(".py").read_text()
            assert f"class {name}" in source or f"def {name}" in source, (main_py, target)
    impls = {p.parent.name for p in Path(speclib.REPO_ROOT, "impls").glob("*/__main__.py")}
    assert {"nodepert", "bpfree", "pepita", "two_routes", "wide_align"} <= impls


def _progress_after(epoch, epochs, n=2):
    history = {"test_acc": np.full((epochs + 1, n), np.nan), "train_loss": np.full((epochs + 1, n), np.nan)}
    history["test_acc"][epoch] = [80.0, 90.0]
    history["train_loss"][epoch] = [0.5, 0.25]
    return driver.Progress(epoch, epochs, history, np.full(n, -1), np.full(n, -1))


def test_the_log_line_starts_with_the_time_and_ends_with_the_eta_of_the_batch():
    from datetime import datetime

    program = CountingProgram([[1, 1, 1, 1], [1, 1, 1, 1]])
    progress = _progress_after(3, 10)
    remaining = driver.eta(epochs_done=3, epochs_left=7, elapsed_s=90.0)   # 30 s per epoch, 7 epochs left
    line = driver.log_line("nodepert-abc", program, progress, 31.0, remaining, datetime(2026, 12, 3, 9, 55, 0))
    assert line.startswith("2026-12-03 09:55:00 [nodepert-abc] epoch 3/10 | 2 runs | train loss 0.375 | ")
    assert "test_acc median 85 max 90" in line and "| 31 s/epoch |" in line
    assert line.endswith("| ETA 0:03:30 (09:58:30)")
    # epoch 0 (evaluation before training) has no epoch time and no ETA yet
    first = driver.log_line("nodepert-abc", program, _progress_after(0, 10), None, None, datetime(2026, 12, 3, 9, 0))
    assert "s/epoch" not in first and "ETA" not in first


def test_eta_is_the_mean_epoch_time_times_the_epochs_left():
    assert driver.eta(4, 6, 100.0) == pytest.approx(150.0)
    assert driver.eta(5, 0, 100.0) == 0.0            # the last epoch: nothing left
    assert driver.eta(0, 10, 0.0) is None             # nothing timed yet
    assert driver.format_duration(0.2) == "0:00:01"
    assert driver.format_duration(3725.0) == "1:02:05"
    assert driver.format_duration(90061.0) == "25:01:01"


def test_the_driver_logs_timestamped_lines_with_an_eta(tmp_path, capsys):
    import re

    job = _job(tmp_path, 1, epochs=3)
    driver.train(job, TrainOptions(tmp_path, 10.0, "cpu"), lambda j, o: CountingProgram([[1, 1, 1, 1]]))
    lines = [line for line in capsys.readouterr().err.splitlines() if "] epoch " in line]
    assert len(lines) == 4                                              # epoch 0, then 1..3
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \["
    assert all(re.match(stamp, line) for line in lines)
    assert all(re.search(r"\| ETA \d+:\d\d:\d\d \(\d\d:\d\d:\d\d\)$", line) for line in lines[1:])
    assert lines[-1].endswith("| ETA 0:00:00 (" + lines[-1].split(" ")[1] + ")")


def test_the_eta_is_zero_once_every_run_has_diverged(tmp_path, capsys):
    """A batch whose runs all diverge ends there; its last line said "ETA 0:08:41" (epochs it never trains)."""
    job = _job(tmp_path, 1, epochs=5)
    driver.train(job, TrainOptions(tmp_path, 10.0, "cpu"), lambda j, o: CountingProgram([[1, np.nan, 1, 1, 1, 1]]))
    lines = [line for line in capsys.readouterr().err.splitlines() if "] epoch " in line]
    assert len(lines) == 2 and "diverged 1" in lines[-1]
    assert lines[-1].endswith("| ETA 0:00:00 (" + lines[-1].split(" ")[1] + ")")
