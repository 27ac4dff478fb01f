"""README's "Adding a paper", done for real: a tiny paper plugs in without touching any existing file.

The toy paper trains softmax regression (numpy) on digits. It adds papers/toy/paper.yaml and
impls/toy/ only: its targets (fig_toy_curve, toy_all) are generated from paper.yaml, and the
generic rules (dataset, train, figure, scorecard) do the rest.
"""
from __future__ import annotations

import json
import textwrap

import pandas as pd
import pytest

from tests.conftest import run_snakemake

pytestmark = pytest.mark.e2e

PAPER_YAML = """
paper: toy
title: Softmax regression, the smallest paper
citation: creditbench test suite
framework: jax
batch_over: [seed, hparams.lr]
figures:
  fig_toy_curve:
    label: Fig. 1
    title: Softmax regression on digits
    caption: Test accuracy per epoch at two learning rates.
    base: {rule: softmax_sgd, model: {arch: linear}, batch_size: 100}
    scales:
      smoke: {dataset: digits, epochs: 3, grid: {hparams.lr: [0.01, 0.1]}, seeds: [0, 1]}
      cpu: {dataset: fashion_mnist, epochs: 5, grid: {hparams.lr: [0.01, 0.1]}, seeds: [0]}
      paper: {dataset: mnist, epochs: 20, grid: {hparams.lr: [0.01, 0.1]}, seeds: [0, 1, 2]}
    plot: {kind: line, x: epoch, y: test_acc, hue: hparams.lr}
claims:
  - {id: toy_learns, figure: fig_toy_curve, claim: lr 0.1 beats lr 0.01, scale: smoke, paper_value: "0.1 > 0.01",
     provenance: "[test]", confirmed: true,
     predicate: {kind: increasing, by: hparams.lr, metric: final_test_acc}}
"""

OPTIONS = '''
"""What a toy spec may name (no framework import)."""
from impls.common.errors import SpecError


def validate(spec):
    if spec["rule"] != "softmax_sgd":
        raise SpecError(f"run spec: key 'rule' is {spec['rule']!r}; allowed values: 'softmax_sgd'")
'''

TRAIN = '''
"""Softmax regression with plain SGD, in numpy: a program for the common driver and nothing else."""
import numpy as np

from impls.common import datasets
from impls.common.driver import BatchProgram


class Program(BatchProgram):
    metric_names = ["train_acc", "test_acc"]
    divergence_losses = ()

    def __init__(self, job, options):
        spec = job.specs[0]
        ds = datasets.load_dataset(options.datasets_dir / f"{spec['dataset']}.npz")
        self.x, self.xt = datasets.standardize(ds.x_train, ds.x_test, "global")
        self.y, self.yt, self.batch_size = ds.y_train, ds.y_test, spec["batch_size"]
        self.lrs = np.array([s["hparams"]["lr"] for s in job.specs])
        self.w = np.stack([np.random.default_rng(s["seed"]).normal(0, 0.01, (self.x.shape[1], 10)) for s in job.specs])

    def evaluate(self):
        return {"train_acc": 100 * np.mean((self.x @ self.w).argmax(-1) == self.y, axis=-1),
                "test_acc": 100 * np.mean((self.xt @ self.w).argmax(-1) == self.yt, axis=-1)}

    def train_epoch(self, progress):
        onehot, b = np.eye(10)[self.y], self.batch_size
        for i in range(0, len(self.x) - b + 1, b):
            xb, yb = self.x[i:i + b], onehot[i:i + b]
            z = xb @ self.w
            p = np.exp(z - z.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            self.w -= self.lrs[:, None, None] * np.einsum("bi,rbk->rik", xb, p - yb) / len(xb)
        return self.evaluate()

    def state(self):
        return {"w": self.w}

    def load_state(self, state):
        self.w = state["w"]

    def run_files(self, i):
        return {"params.npz": {"w": self.w[i]}}

    def device(self):
        return {"framework": "numpy", "backend": "cpu"}
'''

MAIN = '''
import sys

from impls.common.cli import Impl, main

if __name__ == "__main__":
    sys.exit(main(Impl(framework="jax", program="impls.toy.train:Program")))
'''

def snapshot(root, *parts):
    """Bytes of every file under root/part for each part (a file or a folder), bytecode caches aside."""
    paths = [p for part in parts for p in ([root / part] if (root / part).is_file() else (root / part).rglob("*"))]
    return {p: p.read_bytes() for p in paths if p.is_file() and "__pycache__" not in p.parts}


def test_a_new_paper_plugs_in(workdir):
    before = snapshot(workdir, "papers", "workflow", "Snakefile", "config")
    (workdir / "papers" / "toy").mkdir()
    (workdir / "papers" / "toy" / "paper.yaml").write_text(textwrap.dedent(PAPER_YAML))
    (workdir / "impls" / "toy").mkdir()
    files = {"__init__.py": 'IMPL_VERSION = "1"\n', "options.py": OPTIONS, "train.py": TRAIN, "__main__.py": MAIN}
    for name, text in files.items():
        (workdir / "impls" / "toy" / name).write_text(textwrap.dedent(text))

    # fig_toy_curve and toy_all exist because papers/toy/paper.yaml does
    done = run_snakemake(workdir, "--cores", "2", "fig_toy_curve", "toy_all", "results/scorecard.csv",
                         "--config", "papers=[toy]")
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(workdir / "results" / "toy" / "fig_toy_curve.csv")
    assert table["run_id"].nunique() == 4 and set(table["status"]) == {"ok"}
    assert (workdir / "results" / "toy" / "fig_toy_curve.png").stat().st_size > 10_000
    # its record: the copy has no .git, so every run says it names no commit, and the packages
    record = json.loads((workdir / "results" / "toy" / "fig_toy_curve.provenance.json").read_text())
    assert [(g["git_commit"], len(g["run_ids"])) for g in record["trained"]] == [("unknown", 4)]
    assert record["impl_versions"] == ["1"] and record["trained"][0]["versions"]["pandas"]
    card = pd.read_csv(workdir / "results" / "scorecard.csv")
    assert list(card["claim_id"]) == ["toy_learns"] and card["verdict"].iloc[0] == "reproduced"
    # no existing file was touched: no other paper's, no rule file, not the Snakefile or the config
    after = snapshot(workdir, "papers", "workflow", "Snakefile", "config")
    assert {p: data for p, data in after.items() if "toy" not in p.parts} == before


def test_unknown_paper_names_the_ones_that_exist(workdir):
    done = run_snakemake(workdir, "-n", "all", "--config", "papers=[nodeprt]")
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "config: key 'papers' lists 'nodeprt'" in out and "papers with a paper.yaml: " in out
