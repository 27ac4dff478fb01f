"""bpfree's best-lr table (``impls.bpfree.figures.best_lr_table``) on runs written by hand: one row per
configuration, a configuration that diverged at every learning rate included, and the count of diverged
learning rates shown as a whole number."""
from __future__ import annotations

import json

import numpy as np

from impls.bpfree.figures import best_lr_table
from impls.common import metrics, plotting
from impls.common import specs as speclib

EPOCHS = 4


def spec(activation, lr, **model):
    return speclib.validate_spec({
        "paper": "bpfree", "rule": "drtp", "dataset": "digits", "seed": 0, "epochs": EPOCHS, "batch_size": 32,
        "model": {"arch": "mlp", "hidden": [16], "activation": activation, **model}, "hparams": {"lr": lr},
        "scale": "smoke"})


def drawn_rows(table, figure, n_columns):
    """The text of the drawn table's cells, row by row (header first)."""
    drawn = plotting.table_figure(table, figure).axes[0].tables[0].get_celld()
    return [[drawn[r, c].get_text().get_text() for c in range(n_columns)] for r in sorted({r for r, _ in drawn})]


def write_run(results, spec_, test_error, diverged_epoch=None):
    """A finished run: test and train error ``test_error`` at every epoch, NaN from ``diverged_epoch`` on."""
    rid = speclib.run_id(spec_)
    run_dir = results / "bpfree" / "runs" / rid
    run_dir.mkdir(parents=True)
    error = np.full(EPOCHS + 1, float(test_error))
    if diverged_epoch is not None:
        error[diverged_epoch:] = np.nan
    metrics.write_metrics(run_dir, {"train_error": error, "test_error": error}, EPOCHS + 1)
    status = "ok" if diverged_epoch is None else "diverged"
    (run_dir / "final.json").write_text(json.dumps({"status": status, "diverged_epoch": diverged_epoch}))
    return rid, spec_


def test_a_configuration_diverged_at_every_lr_is_one_row_at_the_lr_that_lasted_longest(tmp_path):
    runs = dict([write_run(tmp_path, spec("relu", 1e-4), 50.0, diverged_epoch=3),
                 write_run(tmp_path, spec("relu", 1e-3), 50.0, diverged_epoch=1),
                 write_run(tmp_path, spec("tanh", 1e-4), 20.0),
                 write_run(tmp_path, spec("tanh", 1e-3), 15.0)])
    figure = {"paper": "bpfree", "target": "tab_test", "label": "T", "title": "t", "scale": "smoke",
              "dataset": "digits", "factors": ["rule", "model.activation", "hparams.lr", "seed"], "runs": runs,
              "plot": {"kind": "table", "by": ["rule", "activation", "lr", "diverged_lrs"],
                       "metrics": ["final_test_error"]}}
    table = best_lr_table(figure, tmp_path)
    chosen = table.drop_duplicates("run_id").set_index("activation")
    assert chosen.loc["relu", "lr"] == 1e-4 and chosen.loc["tanh", "lr"] == 1e-3
    assert chosen.loc["relu", "diverged_lrs"] == 2 and chosen.loc["tanh", "diverged_lrs"] == 0

    text = drawn_rows(table, figure, 6)
    assert text[0][3] == "diverged learning rates"
    assert [row[1:5] for row in text[1:]] == [["relu", "0.0001", "2", "—"], ["tanh", "0.001", "0", "15.0 (n=1)"]]


def test_conv_layers_trained_is_not_applicable_to_an_mlp(tmp_path):
    """Frenkel's table mixes MLP and conv rows: an MLP's conv_trained (default true) shows as "—", not "yes"."""
    runs = dict([write_run(tmp_path, spec("tanh", 1e-3), 20.0),
                 write_run(tmp_path, spec("tanh", 1e-3, arch="conv", conv="4c3-2p", conv_trained=False), 30.0),
                 write_run(tmp_path, spec("tanh", 1e-3, arch="conv", conv="4c3-2p", conv_trained=True), 25.0)])
    figure = {"paper": "bpfree", "target": "tab_test", "label": "T", "title": "t", "scale": "smoke",
              "dataset": "digits", "factors": ["rule", "model.arch", "model.conv", "model.conv_trained", "hparams.lr",
                                               "seed"], "runs": runs,
              "plot": {"kind": "table", "by": ["conv", "conv_trained"], "metrics": ["final_test_error"]}}
    table = best_lr_table(figure, tmp_path)
    text = drawn_rows(table, figure, 3)
    assert text[0] == ["conv layers", "conv layers trained", "final test error (%)"]
    assert sorted(row[:2] for row in text[1:]) == [["4c3-2p", "no"], ["4c3-2p", "yes"], ["none", "—"]]
