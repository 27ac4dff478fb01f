"""End to end: every bpfree target renders at smoke scale; the cpu and paper DAGs resolve."""
from __future__ import annotations

import pandas as pd
import pytest

from impls.common.io import read_json
from tests.conftest import run_snakemake

pytestmark = pytest.mark.e2e

TARGETS = ["fig_bpfree_train_error", "fig_bpfree_test_error", "fig_bpfree_lr_sweep", "fig_bpfree_bp_cosine",
           "fig_bpfree_weight_alignment", "fig_bpfree_trackers", "tab_bpfree_grid", "fig_bpfree_reconstruction",
           "tab_bpfree_dfa", "tab_bpfree_drtp", "tab_bpfree_local_errors"]
BPFREE = "papers=[bpfree]"


def test_every_bpfree_target_renders_at_smoke_scale(workdir):
    # ~2 min on an idle 2-core machine; the timeout leaves room for a loaded one
    done = run_snakemake(workdir, "--cores", "2", *TARGETS, "--config", BPFREE, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    out = workdir / "results" / "bpfree"
    for target in TARGETS:
        assert (out / f"{target}.png").stat().st_size > 5_000, target
        assert (out / f"{target}.pdf").stat().st_size > 1_000, target
    train = pd.read_csv(out / "fig_bpfree_train_error.csv")
    runs = train.drop_duplicates("run_id")
    assert sorted(runs["rule"]) == ["bp", "cce", "dfa", "drtp"] and set(runs["status"]) == {"ok"}
    assert sorted(train["epoch"].unique()) == [0, 1, 2]
    cos = pd.read_csv(out / "fig_bpfree_bp_cosine.csv").query("metric == 'bpcosine'")
    assert set(cos["rule"]) == {"dfa", "drtp", "cce"} and set(cos["layer"]) == {"l1", "l2", "l3"}
    assert cos["value"].dropna().between(-1, 1).all()
    walign = pd.read_csv(out / "fig_bpfree_weight_alignment.csv").query("metric == 'walign'")
    assert set(walign["layer"]) == {"l2", "l3", "out"}
    sweep = pd.read_csv(out / "fig_bpfree_lr_sweep.csv").drop_duplicates("run_id")
    assert len(sweep) == 8 and sweep["best_train_error"].notna().all()
    recon = pd.read_csv(out / "fig_bpfree_reconstruction.csv")
    assert set(recon.query("split == 'sample'")["metric"]) == {"input", "reconstruction"}
    for rid in runs["run_id"]:
        assert read_json(out / "runs" / rid / "final.json")["status"] == "ok"

    again = run_snakemake(workdir, "--cores", "1", *TARGETS, "--config", BPFREE)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_cpu_and_paper_dags_resolve(workdir, scale):
    done = run_snakemake(workdir, "-n", *TARGETS, "--config", BPFREE, f"scale={scale}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train" in done.stdout + done.stderr
    assert not (workdir / "results").exists()
