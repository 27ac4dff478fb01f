"""What each paper's smoke-scale outputs must show beyond "every figure rendered" (tests/test_e2e.py).

``PAPER_CHECKS[paper](out, logs, plan)``: ``out`` is results/<paper>, ``logs`` is logs/<paper>,
``plan`` the smoke plan of the configured papers. A paper without an entry gets only the generic
checks of test_e2e.py. ``MIN_PNG_BYTES`` lowers the smallest accepted figure image for a paper.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from impls.common.io import read_json

MIN_PNG_BYTES = {"bpfree": 5_000}
DEFAULT_MIN_PNG_BYTES = 10_000


def train_log(logs: Path) -> str:
    """Every train job log of the paper, concatenated (a job trains one or more batches)."""
    return "".join(log.read_text() for log in sorted((logs / "train").glob("*.log")))


def final_status(out: Path, run_id: str) -> str:
    return read_json(out / "runs" / run_id / "final.json")["status"]


def check_nodepert(out: Path, logs: Path, plan) -> None:
    table = pd.read_csv(out / "fig_nodepert_lr.csv")
    runs = table.drop_duplicates("run_id")
    # the smoke grid of papers/nodepert/paper.yaml: {np, sgd} x {0.01, 0.1}, seed 0, 2 epochs
    assert sorted(zip(runs["rule"], runs["lr"])) == [("np", 0.01), ("np", 0.1), ("sgd", 0.01), ("sgd", 0.1)]
    assert set(runs["status"]) == {"ok"}
    assert sorted(table["epoch"].unique()) == [0, 1, 2]
    for rid in runs["run_id"]:
        final = read_json(out / "runs" / rid / "final.json")
        assert final["status"] == "ok" and final["final"]["final_acc"] is not None
    lr_batches = plan.figure_batches("fig_nodepert_lr")
    assert len(lr_batches) == 2  # NP batch + SGD batch
    log = train_log(logs)
    assert all(f"[{b.batch_id}] epoch 2/2" in log for b in lr_batches)
    # the other figures
    depth = pd.read_csv(out / "fig_nodepert_depth.csv").drop_duplicates("run_id")
    assert sorted(set(zip(depth["rule"], depth["n_hl"]))) == [("np", 2), ("np", 4), ("sgd", 2), ("sgd", 4)]
    assert len(depth) == 12 and set(depth["status"]) == {"ok"}
    width = pd.read_csv(out / "fig_nodepert_width.csv").drop_duplicates("run_id")
    assert sorted(width["width"].unique()) == [16, 64]
    adam = pd.read_csv(out / "fig_nodepert_adam.csv").drop_duplicates("run_id")
    assert sorted(adam["rule"].unique()) == ["np", "np_adam", "sgd", "sgd_adam"]
    crash = pd.read_csv(out / "fig_nodepert_crash_timing.csv")
    assert len(crash) == 3 and set(crash["crash_class"]) <= {"crash", "no_crash", "no_learning"}
    for rid, cls in zip(crash["run_id"], crash["crash_class"]):
        assert read_json(out / "runs" / rid / "final.json")["crash"]["crash_class"] == cls
    lines = pd.read_csv(out / "fig_nodepert_linesearch.csv")
    assert sorted(set(zip(lines["n_hl"], lines["width"]))) == [(1, 16), (1, 32), (2, 32)]
    assert set(lines["rule"]) == {"np", "sgd"} and len(lines) == 3 * 2 * 10  # 10 step sizes at smoke
    for rid in lines["run_id"].unique():
        assert read_json(out / "runs" / rid / "final.json")["linesearch"]["batches"] == 4  # digits: 497 test images
    gaps = pd.read_csv(out / "fig_nodepert_budget_gap.csv")
    assert sorted(zip(gaps["panel"], gaps["rule"], gaps["budget"])) == [
        (p, r, b) for p in ("FC", "conv") for r in ("np", "sgd") for b in (1, 2)]
    for panel in ("FC", "conv"):                                     # each panel's own SGD reference
        assert gaps.set_index(["panel", "rule", "budget"]).loc[(panel, "sgd", 2), "gap"] == 0.0
    appendix = pd.read_csv(out / "fig_nodepert_appendix.csv").drop_duplicates("run_id")
    assert sorted(zip(appendix["rule"], appendix["activation"], appendix["batch_size"], appendix["epochs"])) == [
        ("np", "linear", 100, 1), ("np", "relu", 10, 1), ("np", "relu", 100, 10), ("np_wd", "relu", 100, 1),
        ("sgd", "linear", 100, 1), ("sgd", "relu", 10, 1), ("sgd", "relu", 100, 10), ("sgd_wd", "relu", 100, 1)]
    for target, arch in (("fig_nodepert_conv", "allcnn_a"), ("fig_nodepert_conv_small", "conv_base")):
        conv = pd.read_csv(out / f"{target}.csv").drop_duplicates("run_id")
        assert len(conv) == 4 and set(conv["rule"]) == {"np", "sgd"} and set(conv["status"]) == {"ok"}, target
        for rid in conv["run_id"]:
            assert read_json(out / "runs" / rid / "spec.json")["model"]["arch"] == arch
    dyn = pd.read_csv(out / "fig_nodepert_crash_dynamics.csv")
    assert dyn["run_id"].nunique() == 2 and dyn.groupby("run_id").size().min() >= 2 * 130  # >= 2 epochs x 130
    assert dyn["plotted"].sum() == dyn.groupby("run_id").size()[dyn.loc[dyn["plotted"], "run_id"].iloc[0]]
    assert {"norm_np", "norm_sgd", "norm_true", "w_norm", "delta_mse", "test_acc"} <= set(dyn.columns)


def check_bpfree(out: Path, logs: Path, plan) -> None:
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
        assert final_status(out, rid) == "ok"


def check_pepita(out: Path, logs: Path, plan) -> None:
    table = pd.read_csv(out / "tab_pepita_accuracy.csv")
    runs = table.drop_duplicates("run_id")
    assert sorted(zip(runs["arch"], runs["rule"])) == sorted(
        (a, r) for a in ("fc", "conv") for r in ("pepita", "bp", "fa", "drtp"))
    assert sorted(table["epoch"].unique()) == [0, 1, 2]
    for rid in runs["run_id"]:
        assert final_status(out, rid) in ("ok", "diverged")
    ok = runs[runs["rule"].isin(["pepita", "bp"]) & (runs["arch"] == "fc")]
    assert (ok["final_test_acc"] > 50).all()  # digits, 2 epochs: both learn

    control = pd.read_csv(out / "fig_pepita_control.csv").drop_duplicates("run_id")
    assert set(control["condition"]) == {"PEPITA", "F = 0", "RP k=0.1", "RP k=1"}
    align = pd.read_csv(out / "fig_pepita_alignment.csv")
    assert {"angle", "w1norm"} <= set(align[align["split"] == "weights"]["metric"])
    slow = pd.read_csv(out / "tab_pepita_slowness.csv")
    assert slow.groupby(["rule", "arch"]).ngroups == 8 and slow["fit_epochs"].eq(3).all()
    filters = pd.read_csv(out / "fig_pepita_conv_filters.csv")
    assert set(filters["rule"]) == {"pepita", "bp"} and filters["filter"].nunique() == 8
    # every batch (one per configuration, seeds included) ran its 2 epochs
    log = train_log(logs)
    assert all(f"[{b.batch_id}] epoch 2/2" in log for b in plan.batches.values() if b.paper == "pepita")


def check_two_routes(out: Path, logs: Path, plan) -> None:
    acc = pd.read_csv(out / "tab_two_routes_accuracy.csv")
    runs = acc.drop_duplicates("run_id")
    assert sorted(runs["rule"]) == sorted(["bp", "fa", "wm", "ia", "sa", "aa", "kp"])
    assert sorted(acc["epoch"].unique()) == [0, 1, 2]
    for rid in runs["run_id"]:
        assert final_status(out, rid) == "ok"
    assert runs.set_index("rule")["final_test_acc"]["bp"] > 30   # digits, 2 epochs: BP learns
    assert (runs["final_test_top5"] >= runs["final_test_acc"]).all()

    angles = pd.read_csv(out / "fig_two_routes_angles.csv")
    layer_rows = angles[(angles["split"] == "align") & angles["layer"].notna()]
    assert set(layer_rows["metric"]) == {"weight_angle", "projection_angle", "gradient_angle"}
    assert layer_rows["layer"].nunique() == 10      # stem, 6 block convs, 2 projections, classifier
    bp = layer_rows[layer_rows["rule"] == "bp"]["value"].dropna()
    assert len(bp) and bp.abs().max() < 0.5          # BP: every angle 0
    fa0 = layer_rows[(layer_rows["rule"] == "fa") & (layer_rows["epoch"] == 0) & (layer_rows["metric"] == "weight_angle")]
    assert fa0["value"].min() > 60                   # independent draws: near 90 degrees

    rules = pd.read_csv(out / "tab_two_routes_rules.csv").set_index("rule")
    assert set(rules.index) >= {"bp", "fa", "wm", "ia", "sa", "aa", "kp"}
    assert rules.loc["sa", "measured angle(B, W^T) (deg)"] < 1.0 and rules.loc["sa", "self"] == 2e-3
    assert np.isnan(rules.loc["fa", "measured angle(B, W^T) (deg)"])

    fp = pd.read_csv(out / "fig_two_routes_fixed_points.csv").drop_duplicates("run_id")
    assert len(fp) == 6 and set(fp["inputs"]) == {"white", "data"}
    white = fp[fp["inputs"] == "white"].set_index("rule")
    assert white.loc["sa", "final_fp_error"] < 1e-3 and white.loc["aa", "final_fp_error"] < 1e-3
    assert white.loc["wm", "final_fp_error"] < 0.15
    data = fp[fp["inputs"] == "data"].set_index("rule")
    assert data.loc["wm", "final_angle"] > 20        # real data: B* ∝ ΣWᵀ is not aligned with Wᵀ

    noise = pd.read_csv(out / "fig_two_routes_noise.csv").drop_duplicates("run_id")
    assert sorted(noise["noise_var"].astype(float).unique()) == [0.0, 0.01]
    wm = pd.read_csv(out / "fig_two_routes_wm_sensitivity.csv").drop_duplicates("run_id")
    assert set(wm[wm["rule"] == "wm"]["input_distribution"]) == {"none", "normal"}

    stable = pd.read_csv(out / "fig_two_routes_stability.csv").drop_duplicates("run_id")
    assert len(stable) == 8 and sorted(stable["rule"].unique()) == ["aa", "bp", "fa", "ia", "wm"]
    aa = stable[stable["rule"] == "aa"]            # the code defaults and the scaled pair, ratio kept
    assert sorted(zip(aa["alpha"].astype(float), aa["beta"].astype(float))) == [(1e-4, 2e-4), (1e-3, 2e-3)]
    assert (stable[stable["rule"] == "bp"]["alpha"] == "default").all()   # a rule without coefficients


def check_wide_align(out: Path, logs: Path, plan) -> None:
    width = pd.read_csv(out / "fig_wide_align_width.csv")
    assert sorted(width["rule"].unique()) == sorted(["bp", "alignada", "dfa", "alignzero", "fa", "lastlayer"])
    assert set(width["width"]) == {8, 16}
    assert width["val_acc"].notna().all() and width["final_test_acc"].notna().all()
    for rid in width["run_id"]:
        assert final_status(out, rid) in ("ok", "diverged")

    score = pd.read_csv(out / "fig_wide_align_score_width.csv")
    assert set(score["width"]) == {8, 16} and set(score["layer"]) == {1, 2, 3}
    assert score["score"].between(-1, 1).all() and score["control"].between(-1, 1).all()
    first = score[(score["layer"] == 1) & (score["epoch"] == 1)]
    # the 1-channel first layer's chance level is high (papers/wide_align/README.md)
    assert (first["control"] > 0.5).all()

    small = pd.read_csv(out / "fig_wide_align_small_data.csv")
    assert set(small["n_train"]) == {45, 450}
    timing = pd.read_csv(out / "fig_wide_align_time.csv")
    assert (timing["time_epoch"] > 0).all()
    add = pd.read_csv(out / "fig_wide_align_add.csv")
    assert set(add["rule"]) == {"bptt", "alignada", "alignzero", "readout"}
    assert add["min_test_loss"].notna().all() and (add["min_train_loss"] > 0).all()
    seeds = pd.read_csv(out / "fig_wide_align_seeds.csv")
    assert set(seeds["seed"]) == {99, 100}


def check_arena(out: Path, logs: Path, plan) -> None:
    """Both leaderboards rank every rule they train, with a learning rate chosen from the grid; the conv
    leaderboard also lists each rule without conv code, with its reason and no numbers."""
    from impls.arena.contenders import CONTENDERS, CONV_CONTENDERS

    board = pd.read_csv(out / "tab_arena_leaderboard.csv").set_index("rule")
    assert set(board.index) == set(CONTENDERS) and board["lr"].isin([0.003, 0.03, 0.3]).all()
    conv = pd.read_csv(out / "tab_arena_conv.csv").set_index("rule")
    assert set(conv.index) == set(CONTENDERS)
    trained = conv.loc[list(CONV_CONTENDERS)]
    assert trained["lr"].isin([0.003, 0.03, 0.3]).all() and trained["seeds"].notna().all()
    assert trained.loc["backprop_jax", "cos_early"] > 0.999 and trained.loc["backprop_jax", "test_acc"] > 50.0
    without = conv.drop(index=list(CONV_CONTENDERS))
    assert without["lr"].isna().all() and without["note"].str.startswith("no conv code: ").all()


PAPER_CHECKS = {
    "arena": check_arena,
    "nodepert": check_nodepert,
    "bpfree": check_bpfree,
    "pepita": check_pepita,
    "two_routes": check_two_routes,
    "wide_align": check_wide_align,
}
