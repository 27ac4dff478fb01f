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
