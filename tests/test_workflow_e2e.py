"""End to end: the smoke DAG through Snakemake, the report, and config errors that write nothing."""
from __future__ import annotations

import pandas as pd
import pytest

from impls.common.io import read_json
from tests.conftest import configured_claims, run_snakemake

pytestmark = pytest.mark.e2e


def test_dry_run_lists_the_dag(workdir):
    done = run_snakemake(workdir, "-n", "all")
    assert done.returncode == 0, done.stderr
    for rule in ("dataset", "batch_spec", "train", "evaluate", "aggregate", "plot", "all"):
        assert rule in done.stdout
    assert not (workdir / "results").exists() and not (workdir / "resources").exists()


def test_fig_nodepert_lr_at_smoke_scale_renders_with_report(workdir):
    done = run_snakemake(workdir, "--cores", "2", "fig_nodepert_lr")
    assert done.returncode == 0, done.stderr[-3000:]
    out = workdir / "results" / "nodepert"
    table = pd.read_csv(out / "fig_nodepert_lr.csv")
    runs = table.drop_duplicates("run_id")
    # the smoke grid of papers/nodepert/paper.yaml: {np, sgd} x {0.01, 0.1}, seed 0, 2 epochs
    assert sorted(zip(runs["rule"], runs["lr"])) == [("np", 0.01), ("np", 0.1), ("sgd", 0.01), ("sgd", 0.1)]
    assert set(runs["status"]) == {"ok"}
    assert sorted(table["epoch"].unique()) == [0, 1, 2]
    assert (out / "fig_nodepert_lr.png").stat().st_size > 10_000
    assert (out / "fig_nodepert_lr.pdf").stat().st_size > 1_000
    for rid in runs["run_id"]:
        final = read_json(out / "runs" / rid / "final.json")
        assert final["status"] == "ok" and final["final"]["final_acc"] is not None
    logs = list((workdir / "logs" / "nodepert" / "train").glob("*.log"))
    assert len(logs) == 2 and all("epoch 2/2" in log.read_text() for log in logs)  # NP batch + SGD batch

    again = run_snakemake(workdir, "--cores", "2", "fig_nodepert_lr")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    # the scorecard lists every claim of the configured papers; those targeted at another scale are not run
    card = run_snakemake(workdir, "--cores", "1", "results/scorecard.csv")
    assert card.returncode == 0, card.stderr[-3000:]
    scorecard = pd.read_csv(workdir / "results" / "scorecard.csv")
    claims = configured_claims(workdir)
    assert list(scorecard["claim_id"]) == [c["id"] for c in claims]
    other_scale = [c.get("scale", "paper") != "smoke" for c in claims]
    assert set(scorecard["verdict"][other_scale]) <= {"not run at this scale"}
    assert (workdir / "results" / "scorecard.png").stat().st_size > 10_000

    report = run_snakemake(workdir, "--cores", "1", "fig_nodepert_lr", "results/scorecard.csv",
                           "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    html = (workdir / "results" / "report.html").read_text(errors="replace")
    assert "fig_nodepert_lr" in html and "Fig. 1" in html and "scorecard" in html


@pytest.mark.parametrize("override, message", [
    ("scale=big", "config: key 'scale' is 'big'; allowed values: 'smoke', 'cpu', 'paper'"),
    ("platform=cuda", "config: key 'platform' is 'cuda'; allowed values: 'auto', 'cpu', 'gpu', 'tpu'"),
])
def test_bad_config_names_the_key_and_writes_nothing(workdir, override, message):
    done = run_snakemake(workdir, "--cores", "1", "all", "--config", override)
    assert done.returncode != 0
    assert message in done.stderr
    assert not (workdir / "results").exists() and not (workdir / "resources").exists()
    assert not (workdir / "logs").exists()
