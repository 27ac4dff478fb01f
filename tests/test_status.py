"""The README's paper status table is exactly what the committed scorecards generate."""
import pandas as pd

from impls.common.status import BEGIN, END, status_table
from tests.conftest import REPO


def test_readme_status_table_matches_the_scorecards():
    cards = [pd.read_csv(p) for p in sorted((REPO / "docs" / "status").glob("scorecard-*.csv"))]
    assert cards, "docs/status/scorecard-<scale>.csv missing"
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index(BEGIN) + len(BEGIN):readme.index(END)].strip()
    assert block == status_table(cards), "README is stale: run python -m impls.common.status docs/status/*.csv --readme README.md"


def test_status_cells_count_reproduced_claims():
    card = pd.DataFrame([
        {"paper": "nodepert", "claim_id": "a", "claim_scale": "cpu", "scale_run": "cpu", "verdict": "reproduced"},
        {"paper": "nodepert", "claim_id": "b", "claim_scale": "cpu", "scale_run": "cpu", "verdict": "not reproduced"},
        {"paper": "nodepert", "claim_id": "c", "claim_scale": "paper", "scale_run": "cpu", "verdict": "not run at this scale"}])
    row = next(line for line in status_table([card]).splitlines() if line.startswith("| [nodepert]"))
    assert "| 1/2 reproduced, 1 not |" in row
    # a paper the cpu scorecard does not cover shows its cpu claims as not run, not as "no claims"
    pepita = next(line for line in status_table([card]).splitlines() if line.startswith("| [pepita]"))
    assert pepita.split("|")[5].strip().endswith("claims, not run")


def test_claims_whose_figure_was_not_run_are_counted_as_such():
    card = pd.DataFrame([
        {"paper": "nodepert", "claim_id": "a", "claim_scale": "cpu", "scale_run": "cpu", "verdict": "reproduced"},
        {"paper": "nodepert", "claim_id": "w", "claim_scale": "cpu", "scale_run": "cpu",
         "verdict": "not run at this scale"}])
    row = next(line for line in status_table([card]).splitlines() if line.startswith("| [nodepert]"))
    assert "| 1/2 reproduced, 1 not run yet |" in row


def test_update_replaces_the_rows_of_rescored_claims_and_appends_new_ones():
    from impls.common.status import update_scorecard
    old = pd.DataFrame([{"paper": "wide_align", "figure": "f", "claim_id": "a", "verdict": "not run at this scale"},
                        {"paper": "nodepert", "figure": "g", "claim_id": "a", "verdict": "reproduced"},
                        {"paper": "pepita", "figure": "h", "claim_id": "b", "verdict": "not reproduced"}])
    new = pd.DataFrame([{"paper": "wide_align", "figure": "f", "claim_id": "a", "verdict": "reproduced"},
                        {"paper": "wide_align", "figure": "f", "claim_id": "z", "verdict": "not reproduced"},
                        {"paper": "nodepert", "figure": "g", "claim_id": "a", "verdict": "not run at this scale"},
                        {"paper": "pepita", "figure": "h", "claim_id": "c", "verdict": "not run at this scale"}])
    out = update_scorecard(old, new, ["f"])   # g was not rerun: its scored row stays; h's new claim is added
    assert list(zip(out["paper"], out["claim_id"], out["verdict"])) == [
        ("nodepert", "a", "reproduced"), ("pepita", "b", "not reproduced"), ("pepita", "c", "not run at this scale"),
        ("wide_align", "a", "reproduced"), ("wide_align", "z", "not reproduced")]


def test_update_refuses_a_figure_table_that_is_not_of_the_named_scale(tmp_path):
    import pytest

    from impls.common.status import scored_figures
    (tmp_path / "two_routes").mkdir()
    pd.DataFrame({"run_id": ["bp-lr0.1-s0-0000000000"]}).to_csv(tmp_path / "two_routes" / "fig_two_routes_stability.csv")
    with pytest.raises(SystemExit, match="does not hold the 8 runs of fig_two_routes_stability at scale cpu"):
        scored_figures(["fig_two_routes_stability"], "cpu", tmp_path)
    with pytest.raises(SystemExit, match="fig_nope"):
        scored_figures(["fig_nope"], "cpu", tmp_path)


def test_update_checks_the_runs_a_figure_record_names_not_its_derived_rows(tmp_path):
    """An aggregate may write derived rows (fig_nodepert_budget_gap: a gap between an NP and an SGD run) whose
    run_id names no run; the figure's .provenance.json says which runs trained it, and that is what is checked."""
    import json

    import pytest

    from impls.common.plan import build_plan, load_yaml
    from impls.common.status import ROOT, scored_figures
    plan = build_plan({**load_yaml(ROOT / "config" / "config.yaml"), "scale": "cpu", "papers": ["nodepert"]}, ROOT)
    runs = sorted(plan.figures["fig_nodepert_budget_gap"].run_ids)
    folder = tmp_path / "nodepert"
    folder.mkdir()
    derived = pd.DataFrame({"run_id": [f"gap-{i}" for i in range(20)], "panel": "FC", "rule": "np",
                            "dataset": "cifar10", "budget": 5, "gap": 1.0})
    derived.to_csv(folder / "fig_nodepert_budget_gap.csv", index=False)
    record = folder / "fig_nodepert_budget_gap.provenance.json"
    record.write_text(json.dumps({"trained": [{"git_commit": "a", "run_ids": runs[:-1]}]}))
    with pytest.raises(SystemExit, match=f"does not hold the {len(runs)} runs .* holds {len(runs) - 1}"):
        scored_figures(["fig_nodepert_budget_gap"], "cpu", tmp_path)
    record.write_text(json.dumps({"trained": [{"git_commit": "a", "run_ids": runs[:2]},
                                              {"git_commit": "b", "run_ids": runs[2:]}]}))
    card = scored_figures(["fig_nodepert_budget_gap"], "cpu", tmp_path)
    assert set(card.loc[card["figure"] == "fig_nodepert_budget_gap", "paper"]) == {"nodepert"}
