"""The scorecard's report outputs: the HTML page (every row, escaped, filters, offline) and the
summary figure's counts per paper and claim scale."""
from html.parser import HTMLParser

import pandas as pd

from impls.common.claims import VERDICTS, render_summary_png, verdict_counts
from impls.common.html_tables import SCORECARD_COLUMNS, scorecard_page


def card():
    rows = [("nodepert", "cpu", "reproduced"), ("nodepert", "cpu", "not reproduced"),
            ("nodepert", "paper", "not run at this scale"), ("pepita", "cpu", "reproduced"),
            ("pepita", "paper", "unverified paper number")]
    return pd.DataFrame([{
        "paper": paper, "figure": f"fig_{paper}_x", "label": "Fig. 1", "claim_id": f"{paper}-{i}",
        "claim": "|B - B*| < 0.1 & W <b>bold</b>" if i == 1 else f"claim {i}", "claim_scale": scale,
        "paper_value": 90.5, "tolerance": "", "provenance": "[figure]", "ours": "91.2 (n=1)", "scale_run": "cpu",
        "verdict": verdict} for i, (paper, scale, verdict) in enumerate(rows)])


class Rows(HTMLParser):
    """Body rows (their data-* attributes and cell texts) and the <select> options of the page."""

    def __init__(self):
        super().__init__()
        self.rows, self.options, self.tags, self._cell = [], {}, set(), None
        self._select = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "tr" and any(k.startswith("data-") for k in attrs):
            self.rows.append((attrs, []))
        elif tag == "td":
            self._cell = ""
        elif tag == "select":
            self._select = attrs["data-filter"]
            self.options[self._select] = []
        elif tag == "option":
            self.options[self._select].append(attrs["value"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td":
            self.rows[-1][1].append(self._cell)
            self._cell = None


def parse(page):
    parser = Rows()
    parser.feed(page)
    return parser


def test_scorecard_page_has_every_row_escaped_with_its_filter_values():
    c = card()
    page = scorecard_page(c)
    parsed = parse(page)
    assert [cells for _, cells in parsed.rows] == c[SCORECARD_COLUMNS].astype(str).values.tolist()
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page   # cell text is text, not markup
    assert [attrs["data-verdict"] for attrs, _ in parsed.rows] == list(c["verdict"])
    assert [attrs["data-claim-scale"] for attrs, _ in parsed.rows] == list(c["claim_scale"])
    assert parsed.options == {"paper": ["", "nodepert", "pepita"], "claim-scale": ["", "cpu", "paper"],
                              "verdict": ["", *sorted(set(c["verdict"]))]}


def test_scorecard_page_is_self_contained():
    page = scorecard_page(card())
    parsed = parse(page)
    assert {"style", "script", "input"} <= parsed.tags
    assert not {"link", "img", "iframe"} & parsed.tags          # nothing loaded from elsewhere
    assert "http://" not in page and "https://" not in page and " src=" not in page


def test_summary_counts_claims_per_paper_and_scale_by_verdict(tmp_path):
    counts = verdict_counts(card())
    assert list(counts.columns) == list(VERDICTS)
    assert counts.loc[("nodepert", "cpu")].tolist() == [1, 1, 0, 0]
    assert counts.loc[("nodepert", "paper")].tolist() == [0, 0, 0, 1]
    assert counts.loc[("pepita", "paper")].tolist() == [0, 0, 1, 0]
    assert counts.to_numpy().sum() == len(card())
    render_summary_png(card(), tmp_path / "summary.png")
    from matplotlib.image import imread
    height, width = imread(tmp_path / "summary.png").shape[:2]
    assert width < 2000 and height < 1000                      # a glance, not a 9437-pixel page
