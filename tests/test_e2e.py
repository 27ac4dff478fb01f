"""End to end through Snakemake, one table: the papers and their targets come from the plan.

Every paper of config/config.yaml is a case, with the fig_*/tab_* targets of its paper.yaml
(impls.common.plan.build_plan), so a paper added to the config is covered without editing this
file. What a paper's outputs must show beyond "rendered" lives in tests/e2e_checks.py.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from impls.common.plan import build_plan, paper_target
from tests.conftest import REPO, configured_claims, run_snakemake
from tests.e2e_checks import DEFAULT_MIN_PNG_BYTES, MIN_PNG_BYTES, PAPER_CHECKS

pytestmark = pytest.mark.e2e

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
PLAN = build_plan(CONFIG, REPO)  # at the configured scale: smoke
PAPERS = list(PLAN.papers)
GENERIC_RULES = ("dataset", "batch_spec", "train", "evaluate", "aggregate", "plot", "scorecard", "all")


def only(paper: str, *settings: str) -> list[str]:
    return ["--config", f"papers=[{paper}]", *settings]


def finished(done) -> bool:
    return done.returncode == 0 and "Nothing to be done" in done.stdout + done.stderr


def test_dry_run_lists_the_dag(workdir):
    done = run_snakemake(workdir, "-n", "all")
    assert done.returncode == 0, done.stderr
    for rule in GENERIC_RULES:
        assert rule in done.stdout
    assert not (workdir / "results").exists() and not (workdir / "resources").exists()


def test_every_figure_of_the_plan_is_a_target(workdir):
    done = run_snakemake(workdir, "--list-rules")
    assert done.returncode == 0, done.stderr
    expected = set(PLAN.targets()) | {paper_target(p) for p in PAPERS} | set(GENERIC_RULES)
    assert expected <= set(done.stdout.split())


@pytest.mark.parametrize("paper", PAPERS)
def test_every_target_renders_at_smoke_scale(workdir, paper):
    targets = PLAN.targets(paper)
    dry = run_snakemake(workdir, "-n", *targets, *only(paper))
    assert dry.returncode == 0, dry.stderr[-3000:]

    done = run_snakemake(workdir, "--cores", "2", *targets, "results/scorecard.csv", *only(paper), timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    out, logs = workdir / "results" / paper, workdir / "logs" / paper
    for target in targets:
        assert (out / f"{target}.png").stat().st_size > MIN_PNG_BYTES.get(paper, DEFAULT_MIN_PNG_BYTES), target
        assert (out / f"{target}.pdf").stat().st_size > 1_000, target
    # one train process per batch: runs differing only in batch_over keys train together
    assert sorted(log.stem for log in (logs / "train").glob("*.log")) == sorted(
        b.batch_id for b in PLAN.batches.values() if b.paper == paper)
    if paper in PAPER_CHECKS:
        PAPER_CHECKS[paper](out, logs, PLAN)

    assert finished(run_snakemake(workdir, "--cores", "2", *targets, paper_target(paper), *only(paper)))

    report = run_snakemake(workdir, "--cores", "1", *targets, "results/scorecard.csv",
                           "--report", "results/report.html", *only(paper))
    assert report.returncode == 0, report.stderr[-3000:]
    html = (workdir / "results" / "report.html").read_text(errors="replace")
    assert "scorecard" in html
    for target in targets:
        assert target in html and json.dumps(PLAN.figures[target].label)[1:-1] in html, target


@pytest.mark.parametrize("scale", ["cpu", "paper"])
@pytest.mark.parametrize("paper", PAPERS)
def test_cpu_and_paper_dags_resolve(workdir, paper, scale):
    done = run_snakemake(workdir, "-n", *PLAN.targets(paper), *only(paper, f"scale={scale}"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train" in done.stdout + done.stderr
    assert not (workdir / "results").exists()


def test_scorecard_lists_every_configured_claim(workdir):
    # claims targeted at another scale are listed, not run
    card = run_snakemake(workdir, "--cores", "1", "results/scorecard.csv")
    assert card.returncode == 0, card.stderr[-3000:]
    scorecard = pd.read_csv(workdir / "results" / "scorecard.csv")
    claims = configured_claims(workdir)
    assert list(scorecard["claim_id"]) == [c["id"] for c in claims]
    other_scale = [c.get("scale", "paper") != PLAN.scale for c in claims]
    assert set(scorecard["verdict"][other_scale]) <= {"not run at this scale"}
    assert (workdir / "results" / "scorecard.png").stat().st_size > 10_000


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
