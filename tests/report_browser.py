"""The HTML report, opened in a real headless Chromium: figures, HTML tables and the scorecard are
there and render (the scorecard page sorts and filters), and nothing is fetched from the network.

Called by tests/test_e2e.py on the session's smoke DAG (so that under pytest-xdist's
``--dist loadfile`` every test that reads that DAG runs in the same worker, which builds it once).
Needs Debian's `chromium` (.ci/run installs it) and the `playwright` Python package (pinned in
requirements.txt), which drives the system Chromium; no browser is downloaded.
"""
from __future__ import annotations

import base64
import io
import shutil

import pandas as pd
import pytest

from tests.conftest import configured_claims

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _open_category(page, name):
    page.get_by_text(name, exact=True).first.click()
    page.wait_for_timeout(500)


def _shown_image_size(page, row_text):
    """Click the row's eye icon; return the natural size of the image the report then shows."""
    page.locator("tr", has_text=row_text).locator("a[iconname=eye]").first.click()
    page.wait_for_function("Array.from(document.images).some(i => i.complete && i.naturalWidth > 100)")
    sizes = page.evaluate("Array.from(document.images).map(i => [i.naturalWidth, i.naturalHeight])")
    return max(sizes)


def _shown_page(page, row):
    """Click the row's eye icon; the HTML result it shows (the report puts it in an iframe)."""
    row.locator("a[iconname=eye]").first.click()
    page.wait_for_selector("iframe")
    return page.frame_locator("iframe")


def check_scorecard_page(page, papers):
    """In the scorecard category: scorecard.html has a row per claim (``papers``: the paper of each row,
    in scorecard order); its paper filter and its sorting by a column header work."""
    frame = _shown_page(page, page.locator("tr", has_text="scorecard.html"))
    frame.locator("#scorecard").wait_for()
    assert frame.locator("#scorecard tbody tr").count() == len(papers)
    assert frame.locator("#shown").inner_text() == f"{len(papers)} of {len(papers)} claims shown"
    frame.locator("select[data-filter=paper]").select_option(papers[-1])
    assert frame.locator("#scorecard tbody tr:not([hidden])").count() == papers.count(papers[-1])
    frame.locator("select[data-filter=paper]").select_option("")
    header = frame.locator("th", has_text="paper").first
    header.click()
    assert frame.locator("#scorecard tbody tr td:nth-child(1)").all_inner_texts() == sorted(papers)
    header.click()
    assert frame.locator("#scorecard tbody tr td:nth-child(1)").all_inner_texts() == sorted(papers, reverse=True)


def check_table_page(page, paper, target, title, figure_label):
    """In a paper's category: the tab_* figure's "table" entry shows an HTML table (not an image), headed
    by its title; the paper's label is in the small print."""
    _open_category(page, paper)
    row = page.locator("tr", has_text=target).filter(has=page.get_by_role("cell", name="table", exact=True))
    frame = _shown_page(page, row.first)
    frame.locator("table td").first.wait_for()
    assert frame.locator("h1").inner_text() == title
    assert figure_label in frame.locator("p.meta").inner_text()
    assert frame.locator("table tbody tr").count() > 0
    assert "± 0 " not in " ".join(frame.locator("table").all_inner_texts())   # one seed shows no spread


def check_report_renders_figures_and_scorecard_in_chromium(smoke_dag, tmp_path):
    """The report of the session's smoke DAG (tests/conftest.py: every figure, the scorecard)."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    claims = configured_claims(smoke_dag)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        requests = []
        page.on("request", lambda r: requests.append(r.url) if r.url.startswith("http") else None)
        page.goto((smoke_dag / "results" / "report.html").as_uri())
        page.wait_for_selector("text=Results")
        page.screenshot(path=tmp_path / "home.png")

        _open_category(page, "nodepert")
        width, height = _shown_image_size(page, "fig_nodepert_lr")
        assert width > 500 and height > 300
        assert "Fig. 1" in page.inner_text("body")  # the paper figure label is a column of the results table
        page.screenshot(path=tmp_path / "figure.png")

        page.get_by_text("Results", exact=True).first.click()
        check_table_page(page, "bpfree", "tab_bpfree_local_errors", "Local-loss rules vs FA and BP", "Mostafa")
        page.screenshot(path=tmp_path / "table.png")

        page.get_by_text("Results", exact=True).first.click()
        check_table_page(page, "arena", "tab_arena_leaderboard",              # the rule arena's leaderboard
                         "Every rule on the same MLP, tuned on validation data", "leaderboard")
        page.screenshot(path=tmp_path / "arena.png")

        page.get_by_text("Results", exact=True).first.click()
        _open_category(page, "scorecard")
        href = page.locator("tr", has_text="scorecard.csv").locator("a[iconname=eye]").first.get_attribute("href")
        card = pd.read_csv(io.BytesIO(base64.b64decode(href.split("base64,", 1)[1])))
        assert len(card) == len(claims) and list(card["claim_id"]) == [c["id"] for c in claims]
        width, height = _shown_image_size(page, "scorecard_summary.png")
        assert 500 < width < 2000 and 100 < height < 1500     # a summary, not a page per claim
        page.get_by_text("Results", exact=True).first.click()
        _open_category(page, "scorecard")
        check_scorecard_page(page, list(card["paper"]))
        page.screenshot(path=tmp_path / "scorecard.png")
        browser.close()
    assert not requests, f"the report fetched {requests[:3]}: it must work offline"
    for shot in ("home.png", "figure.png", "table.png", "arena.png", "scorecard.png"):
        assert (tmp_path / shot).stat().st_size > 5_000
