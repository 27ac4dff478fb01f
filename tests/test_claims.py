"""Scorecard predicates and verdicts on synthetic figure tables (each can fail)."""
import numpy as np
import pandas as pd
import pytest

from impls.common.claims import evaluate_claim, scorecard


def table(curves: dict, seeds=(0,)):
    """curves: (rule, lr) -> list of test accuracies per epoch (the same for every seed, +seed)."""
    rows = []
    for (rule, lr), accs in curves.items():
        for seed in seeds:
            rid = f"{rule}-{lr}-{seed}"
            for epoch, acc in enumerate(accs):
                rows.append(dict(run_id=rid, rule=rule, lr=lr, seed=seed, epoch=epoch, split="test", metric="acc",
                                 value=acc + seed, status="ok", final_acc=np.mean(accs[-5:]) + seed,
                                 final_test_acc=accs[-1] + seed))
    return pd.DataFrame(rows)


T = table({("np", 1e-4): [10, 20, 30], ("sgd", 1e-4): [10, 21, 31], ("np", 0.017): [10, 70, 9],
           ("sgd", 0.017): [10, 80, 90], ("sgd", 1e-3): [10, 40, 50]}, seeds=(0, 1))


def claim(**kw):
    return {"id": "c", "figure": "f", "claim": "x", "paper_value": 1.0, "provenance": "[figure]",
            "confirmed": True, "scale": "cpu", **kw}


@pytest.mark.parametrize("predicate, ok", [
    ({"kind": "close_curves", "a": {"rule": "np", "hparams.lr": 1e-4}, "b": {"rule": "sgd", "hparams.lr": 1e-4},
      "metric": "test_acc", "tolerance": 1.0}, True),
    ({"kind": "close_curves", "a": {"rule": "np", "hparams.lr": 1e-4}, "b": {"rule": "sgd", "hparams.lr": 1e-4},
      "metric": "test_acc", "tolerance": 0.5}, False),
    ({"kind": "increasing", "select": {"rule": "sgd"}, "by": "hparams.lr", "metric": "final_test_acc"}, True),
    ({"kind": "increasing", "select": {"rule": "np"}, "by": "hparams.lr", "metric": "final_test_acc"}, False),
    ({"kind": "below", "a": {"rule": "np", "hparams.lr": 0.017}, "b": {"rule": "sgd", "hparams.lr": 0.017},
      "metric": "final_test_acc", "margin": 20.0}, True),
    ({"kind": "below", "a": {"rule": "sgd", "hparams.lr": 0.017}, "b": {"rule": "np", "hparams.lr": 0.017},
      "metric": "final_test_acc", "margin": 0.0}, False),
    ({"kind": "drop_from_peak", "select": {"rule": "np", "hparams.lr": 0.017}, "metric": "test_acc", "min_drop": 50}, True),
    ({"kind": "drop_from_peak", "select": {"rule": "sgd", "hparams.lr": 0.017}, "metric": "test_acc", "min_drop": 1}, False),
    ({"kind": "close", "a": {"rule": "np", "hparams.lr": 1e-4}, "b": {"rule": "sgd", "hparams.lr": 1e-4},
      "metric": "final_test_acc", "tolerance": 1.0}, True),
])
def test_predicates(predicate, ok):
    ours, verdict = evaluate_claim(claim(predicate=predicate), T, "cpu")
    assert verdict == ("reproduced" if ok else "not reproduced"), ours


def test_value_claims_use_the_mean_over_seeds_and_the_tolerance():
    c = claim(scale="paper", paper_value=91.0, tolerance=0.5, metric="final_test_acc",
              select={"rule": "sgd", "hparams.lr": 0.017})
    ours, verdict = evaluate_claim(c, T, "paper")
    assert verdict == "reproduced" and ours.startswith("90.50 ± 0.71 (n=2)")
    assert evaluate_claim({**c, "tolerance": 0.4}, T, "paper")[1] == "not reproduced"
    assert evaluate_claim({**c, "confirmed": False}, T, "paper")[1] == "unverified paper number"
    assert evaluate_claim(c, T, "cpu") == ("", "not run at this scale")
    assert evaluate_claim(c, None, "paper") == ("", "not run at this scale")


def test_a_diverged_run_never_reproduces_a_value():
    t = T.copy()
    t.loc[t.run_id == "sgd-0.017-0", "final_test_acc"] = np.nan
    c = claim(scale="paper", paper_value=90.5, tolerance=50, metric="final_test_acc",
              select={"rule": "sgd", "hparams.lr": 0.017})
    assert evaluate_claim(c, t, "paper") == ("1 of 2 runs diverged", "not reproduced")


def test_unmatched_selection_is_reported_not_crashed():
    c = claim(scale="paper", metric="final_test_acc", tolerance=1, select={"rule": "dfa"})
    ours, verdict = evaluate_claim(c, T, "paper")
    assert verdict == "not reproduced" and "no runs match" in ours


def test_scorecard_has_one_row_per_claim():
    papers = {"p": {"claims": [claim(id="a"), claim(id="b", scale="paper", metric="final_test_acc", tolerance=1,
                                                     select={"rule": "np"})]}}
    card = scorecard(papers, {"f": "Fig. 9"}, "smoke", {})
    assert list(card.claim_id) == ["a", "b"] and set(card.verdict) == {"not run at this scale"}
    assert set(card.label) == {"Fig. 9"}


# --- trends over a sweep (cpu-scale depth/width claims of nodepert) -------------------------------

def sweep(best_by_depth: dict, stable_by_depth: dict, lrs=(1e-3, 1e-2, 1e-1, 1.0), rule="np"):
    """Synthetic final_acc table: per depth, a peak ``best`` at lr 1e-2 and accuracy > 50 % up to
    ``stable`` (60 at every other stable lr, 10 above it)."""
    rows = []
    for depth, best in best_by_depth.items():
        for lr in lrs:
            acc = best if lr == 1e-2 else (60.0 if lr <= stable_by_depth[depth] else 10.0)
            rows.append(dict(run_id=f"{rule}-{depth}-{lr}", rule=rule, n_hl=depth, lr=lr, seed=0, final_acc=acc,
                             status="ok"))
    return pd.DataFrame(rows)


FALLS = sweep({2: 90.0, 4: 85.0, 6: 80.0}, {2: 1e-1, 4: 1e-2, 6: 1e-2})
RISES = sweep({2: 80.0, 4: 85.0, 6: 90.0}, {2: 1e-2, 4: 1e-1, 6: 1.0})
FLAT_THEN_UP = sweep({2: 85.0, 4: 80.0, 6: 82.0}, {2: 1e-1, 4: 1e-1, 6: 1e-1})
BEST = {"kind": "best_over_trend", "select": {"rule": "np"}, "by": "model.n_hl", "over": "hparams.lr",
        "metric": "final_acc"}
LARGEST = {"kind": "largest_passing_trend", "select": {"rule": "np"}, "by": "model.n_hl", "over": "hparams.lr",
           "metric": "final_acc", "threshold": 50.0}


@pytest.mark.parametrize("predicate, data, ok", [
    ({**BEST, "trend": "falls"}, FALLS, True),
    ({**BEST, "trend": "falls"}, RISES, False),
    ({**BEST, "trend": "falls"}, FLAT_THEN_UP, False),        # ends lower, but rises on the way
    ({**BEST, "trend": "not_falls"}, RISES, True),
    ({**BEST, "trend": "not_falls"}, FALLS, False),
    ({**LARGEST, "trend": "falls"}, FALLS, True),             # 0.1, 0.01, 0.01
    ({**LARGEST, "trend": "falls"}, FLAT_THEN_UP, False),     # 0.1 at every depth: does not fall
    ({**LARGEST, "trend": "not_falls"}, FLAT_THEN_UP, True),
    ({**LARGEST, "trend": "not_falls"}, RISES, True),
    ({**LARGEST, "trend": "not_falls"}, FALLS, False),        # 0.1 -> 0.01: a factor 10
    ({**LARGEST, "trend": "not_falls", "factor": 9.0}, FALLS, False),
    ({**LARGEST, "trend": "not_falls", "factor": 11.0}, FALLS, True),
])
def test_trend_predicates(predicate, data, ok):
    ours, verdict = evaluate_claim(claim(predicate=predicate), data, "cpu")
    assert verdict == ("reproduced" if ok else "not reproduced"), ours


def test_trend_predicates_report_values_and_count_diverged_runs_as_failing():
    ours, _ = evaluate_claim(claim(predicate={**BEST, "trend": "falls"}), FALLS, "cpu")
    assert "2: 90.0 @ 0.01" in ours and "6: 80.0 @ 0.01" in ours
    t = FALLS.copy()
    t.loc[t["n_hl"] == 6, "final_acc"] = np.nan               # every depth-6 run diverged
    ours, verdict = evaluate_claim(claim(predicate={**LARGEST, "trend": "falls"}), t, "cpu")
    assert verdict == "reproduced" and "6: 0" in ours         # none passes: 0, below 0.1
    ours, verdict = evaluate_claim(claim(predicate={**BEST, "trend": "not_falls"}), t, "cpu")
    assert verdict == "not reproduced" and "-inf" in ours
    bad = claim(predicate={**BEST, "trend": "sideways"})
    assert evaluate_claim(bad, FALLS, "cpu")[1] == "not reproduced"


def test_list_selection_and_diverged_predicate():
    t = T.copy()
    t.loc[t["run_id"].str.startswith("np-0.017"), "status"] = "diverged"
    every = claim(predicate={"kind": "diverged", "select": {"rule": "np", "hparams.lr": 0.017}})
    assert evaluate_claim(every, t, "cpu") == ("2 of 2 runs diverged", "reproduced")
    mixed = claim(predicate={"kind": "diverged", "select": {"rule": "np", "hparams.lr": [1e-4, 0.017]}})
    assert evaluate_claim(mixed, t, "cpu") == ("2 of 4 runs diverged", "not reproduced")


def test_columns_above_holds_only_when_every_row_clears_the_margin():
    scores = pd.DataFrame({"run_id": ["a", "a", "b", "b"], "layer": [1, 2, 1, 2], "width": [8, 8, 32, 32],
                           "score": [0.5, 0.4, 0.9, 0.8], "control": [0.45, 0.1, 0.6, 0.1]})
    above = claim(predicate={"kind": "columns_above", "select": {"layer": [1, 2]}, "a": "score", "b": "control",
                             "margin": 0.0})
    assert evaluate_claim(above, scores, "cpu") == ("min score − control = 0.050 over 4 rows", "reproduced")
    assert evaluate_claim({**above, "predicate": {**above["predicate"], "margin": 0.1}}, scores, "cpu")[1] == \
        "not reproduced"
    assert evaluate_claim({**above, "predicate": {**above["predicate"], "select": {"layer": 2}, "margin": 0.1}},
                          scores, "cpu")[1] == "reproduced"


def test_curve_at_bounds_the_mean_curve_at_one_epoch():
    at = claim(predicate={"kind": "curve_at", "select": {"rule": "sgd", "hparams.lr": 0.017}, "metric": "test_acc",
                          "epoch": 1, "min": 80.0})
    assert evaluate_claim(at, T, "cpu") == ("test_acc at epoch 1: 80.50", "reproduced")   # seeds 0, 1: 80, 81
    assert evaluate_claim({**at, "predicate": {**at["predicate"], "max": 80.2}}, T, "cpu")[1] == "not reproduced"
    ours, verdict = evaluate_claim({**at, "predicate": {**at["predicate"], "epoch": 9}}, T, "cpu")
    assert verdict == "not reproduced" and "no value at epoch 9" in ours


def test_a_numeric_selection_skips_text_in_a_factor_column():
    t = pd.DataFrame({"run_id": ["a", "b", "c"], "rule": ["bp", "aa", "aa"], "alpha": ["default", "0.001", "0.0001"],
                      "status": ["ok", "diverged", "ok"], "final_test_acc": [90.0, np.nan, 65.0]})
    c = claim(predicate={"kind": "diverged", "select": {"rule": "aa", "hparams.alpha": 1.0e-3}})
    assert evaluate_claim(c, t, "cpu") == ("1 of 1 runs diverged", "reproduced")


def test_a_value_claim_on_one_run_shows_no_spread():
    one = T[T["seed"] == 0]
    c = claim(paper_value=90.0, tolerance=1.0, metric="final_test_acc", select={"rule": "sgd", "hparams.lr": 0.017})
    assert evaluate_claim(c, one, "cpu") == ("90.00 (n=1)", "reproduced")
