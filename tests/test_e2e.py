"""End to end through Snakemake, one table: the papers and their targets come from the plan.

Every paper of config/config.yaml is a case, with the fig_*/tab_* targets of its paper.yaml
(impls.common.plan.build_plan), so a paper added to the config is covered without editing this
file. What a paper's outputs must show beyond "rendered" lives in tests/e2e_checks.py, and the
check of the HTML report in a real browser in tests/report_browser.py. Every test that reads the
session's smoke DAG (tests/conftest.py ``smoke_dag``) is in this file, so that `make test`
(pytest-xdist, ``--dist loadfile``) builds it once, in one worker.
"""
from __future__ import annotations

import json
import os
import stat
from html import escape

import pandas as pd
import pytest
import yaml

from impls.common.io import read_json
from impls.common.plan import build_plan, paper_target
from tests.conftest import REPO, configured_claims, run_snakemake
from tests.report_browser import CHROMIUM, check_report_renders_figures_and_scorecard_in_chromium
from tests.e2e_checks import DEFAULT_MIN_PNG_BYTES, MIN_PNG_BYTES, PAPER_CHECKS

pytestmark = pytest.mark.e2e

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
PLAN = build_plan(CONFIG, REPO)  # at the configured scale: smoke
PAPERS = list(PLAN.papers)
GENERIC_RULES = ("dataset", "train", "figure", "table", "scorecard", "all")


def only(paper: str, *settings: str) -> list[str]:
    return ["--config", f"papers=[{paper}]", *settings]


def written_files(root):
    return sorted(str(p.relative_to(root)) for p in root.glob("results/**/*") if p.is_file())


def only_batch_files(root) -> bool:
    """Planning writes each batch's batch.json (a dry run too) and nothing else."""
    return all(name.endswith("/batch.json") and "/batches/" in name for name in written_files(root))


def test_dry_run_lists_the_dag(workdir):
    done = run_snakemake(workdir, "-n", "all")
    assert done.returncode == 0, done.stderr
    for rule in GENERIC_RULES:
        assert rule in done.stdout
    assert only_batch_files(workdir) and not (workdir / "resources").exists()
    assert len(written_files(workdir)) == len(PLAN.batches)
    # one train job per paper at smoke scale (config train_jobs): its batches share one process
    jobs = {p: [j for j in PLAN.jobs.values() if j.paper == p] for p in PAPERS}
    assert all(len(paper_jobs) == 1 for paper_jobs in jobs.values()), jobs


def test_planning_again_leaves_unchanged_batch_files_alone(workdir):
    assert run_snakemake(workdir, "-n", "all").returncode == 0
    stamps = {p: p.stat().st_mtime_ns for p in workdir.glob("results/*/batches/*/batch.json")}
    assert run_snakemake(workdir, "-n", "all").returncode == 0
    assert {p: p.stat().st_mtime_ns for p in workdir.glob("results/*/batches/*/batch.json")} == stamps


def test_every_figure_of_the_plan_is_a_target(workdir):
    done = run_snakemake(workdir, "--list-rules")
    assert done.returncode == 0, done.stderr
    expected = set(PLAN.targets()) | {paper_target(p) for p in PAPERS} | set(GENERIC_RULES)
    assert expected <= set(done.stdout.split())


@pytest.mark.parametrize("paper", PAPERS)
def test_every_target_renders_at_smoke_scale(smoke_dag, paper):
    targets = PLAN.targets(paper)
    out, logs = smoke_dag / "results" / paper, smoke_dag / "logs" / paper
    for target in targets:
        assert (out / f"{target}.png").stat().st_size > MIN_PNG_BYTES.get(paper, DEFAULT_MIN_PNG_BYTES), target
        assert (out / f"{target}.pdf").stat().st_size > 1_000, target
        if target.startswith("tab_"):   # the drawn table as HTML for the report, beside the PNG
            assert "<td>" in (out / f"{target}.html").read_text(), target
    # one train process per train job, each trained and evaluated every batch it names
    jobs = [j for j in PLAN.jobs.values() if j.paper == paper]
    assert sorted(log.stem for log in (logs / "train").glob("*.log")) == sorted(j.job_id for j in jobs)
    for job in jobs:
        assert sorted(read_json(out / "jobs" / f"{job.job_id}.json")["batches"]) == sorted(job.batch_ids)
        for batch_id in job.batch_ids:
            evaluated = read_json(out / "batches" / batch_id / "evaluated.json")
            assert sorted(evaluated["runs"]) == sorted(PLAN.batches[batch_id].run_ids)
    if paper in PAPER_CHECKS:
        PAPER_CHECKS[paper](out, logs, PLAN)

    html = (smoke_dag / "results" / "report.html").read_text(errors="replace")
    assert "scorecard" in html
    assert "System Message" not in html and "system-message" not in html  # captions are escaped RST
    for target in targets:
        assert target in html and json.dumps(PLAN.figures[target].label)[1:-1] in html, target


def test_results_and_dataset_caches_get_the_umask_mode(smoke_dag):
    """Readable by the group as the umask allows (0644 under 022), not mkstemp's 0600."""
    mask = os.umask(0o022)
    os.umask(mask)
    files = [p for d in ("results", "resources/datasets") for p in (smoke_dag / d).rglob("*") if p.is_file()]
    assert files
    wrong = [f"{p.relative_to(smoke_dag)}: {oct(stat.S_IMODE(p.stat().st_mode))}" for p in files
             if stat.S_IMODE(p.stat().st_mode) != 0o666 & ~mask]
    assert not wrong, f"umask {oct(mask)}: " + ", ".join(wrong[:10])


def test_a_built_dag_has_nothing_left_to_do(smoke_dag):
    done = run_snakemake(smoke_dag, "-n", "all", *PLAN.targets(), *(paper_target(p) for p in PAPERS))
    assert finished(done), (done.stdout + done.stderr)[-3000:]


def finished(done) -> bool:
    return done.returncode == 0 and "Nothing to be done" in done.stdout + done.stderr


@pytest.mark.parametrize("scale", ["cpu", "paper"])
@pytest.mark.parametrize("paper", PAPERS)
def test_cpu_and_paper_dags_resolve(workdir, paper, scale):
    done = run_snakemake(workdir, "-n", *PLAN.targets(paper), *only(paper, f"scale={scale}"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train" in done.stdout + done.stderr
    assert only_batch_files(workdir)
    # one train job per batch at cpu and paper scale (on a cluster: one SLURM job per batch)
    plan = build_plan({**CONFIG, "papers": [paper], "scale": scale}, REPO)
    assert all(job.batch_ids == (job_id,) for job_id, job in plan.jobs.items())


def test_scorecard_lists_every_configured_claim(smoke_dag):
    # claims targeted at another scale are listed, not run
    scorecard = pd.read_csv(smoke_dag / "results" / "scorecard.csv")
    claims = configured_claims(smoke_dag)
    assert list(scorecard["claim_id"]) == [c["id"] for c in claims]
    other_scale = [c.get("scale", "paper") != PLAN.scale for c in claims]
    assert set(scorecard["verdict"][other_scale]) <= {"not run at this scale"}
    assert (smoke_dag / "results" / "scorecard_summary.png").stat().st_size > 10_000
    page = (smoke_dag / "results" / "scorecard.html").read_text()
    assert all(f">{escape(c['id'])}<" in page for c in claims)   # one row per claim, as in the CSV


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_figures_and_scorecard_in_chromium(smoke_dag, tmp_path):
    check_report_renders_figures_and_scorecard_in_chromium(smoke_dag, tmp_path)


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
