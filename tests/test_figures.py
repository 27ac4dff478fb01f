"""aggregate + plot: every built-in plot kind renders from a tidy table, diverged runs included."""
import re
from html import unescape
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from impls.common import display
from impls.common.plotting import plot_figure, summary_table


def fake_table(diverged_lr=1.0):
    rows = []
    for rule in ("np", "sgd"):
        for lr in (0.01, 0.1, 1.0):
            for seed in (0, 1):
                bad = lr == diverged_lr and rule == "np"
                rid = f"{rule}-{lr}-{seed}"
                last = 1 if bad else 3
                for epoch in range(last + 1):
                    acc = np.nan if bad and epoch == last else 10 + 20 * epoch * lr + seed
                    rows.append(dict(run_id=rid, epoch=epoch, split="test", metric="acc", value=acc, rule=rule,
                                     lr=lr, seed=seed, status="diverged" if bad else "ok",
                                     final_acc=None if bad else 10 + 60 * lr + seed))
    return pd.DataFrame(rows)


FIGURE = {"paper": "nodepert", "target": "fig_nodepert_test", "label": "Fig. X", "title": "test",
          "scale": "smoke", "dataset": "digits"}


@pytest.mark.parametrize("plot", [
    {"kind": "line", "x": "epoch", "y": "test_acc", "hue": "hparams.lr", "style": "rule"},
    {"kind": "line", "x": "epoch", "y": "test_acc", "hue": "hparams.lr", "col": "rule"},
    {"kind": "final", "x": "hparams.lr", "y": "final_acc", "hue": "rule", "logx": True},
    {"kind": "table", "by": ["rule", "hparams.lr"], "metrics": ["final_acc"]},
    {"kind": "impls.common.plotting:line_figure", "x": "epoch", "y": "test_acc", "hue": "hparams.lr"},
], ids=["line", "line-facets", "final", "table", "module-function"])
def test_every_plot_kind_renders(tmp_path, plot):
    plot_figure(fake_table(), {**FIGURE, "plot": plot}, tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 5_000 and (tmp_path / "f.pdf").stat().st_size > 1_000
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave no temporaries


def test_summary_table_is_mean_and_std_over_seeds():
    summary = summary_table(fake_table(), ["rule", "hparams.lr"], ["final_acc"])
    row = summary.loc[("sgd", 0.1)]
    assert row[("final_acc", "mean")] == pytest.approx(10 + 6 + 0.5)
    assert row[("final_acc", "std")] == pytest.approx(np.std([0, 1], ddof=1))
    assert summary.loc[("np", 1.0)][("runs", "diverged")] == 2


def test_table_rows_list_rules_as_the_table_first_names_them_and_other_factors_ascending():
    """tab_wide_align_imagenet at cpu scale listed Align-ada, Align-zero, BP, DFA, FA (sorted ids); its
    paper.yaml grid, and so its tidy table, puts BP first."""
    table = pd.DataFrame({"run_id": list("abcdefg"), "rule": ["bp", "bp", "alignada", "alignada", "dfa", "fa", "fa"],
                          "lr": [5.0, 1.0, 5.0, 1.0, 1.0, 5.0, 1.0], "final_acc": [1.0] * 7,
                          "status": ["ok"] * 7})
    assert list(summary_table(table, ["rule"], ["final_acc"]).index) == ["bp", "alignada", "dfa", "fa"]
    assert list(summary_table(table, ["rule", "hparams.lr"], ["final_acc"]).index) == [
        ("bp", 1.0), ("bp", 5.0), ("alignada", 1.0), ("alignada", 5.0), ("dfa", 1.0), ("fa", 1.0), ("fa", 5.0)]
    assert list(summary_table(table, ["hparams.lr", "rule"], ["final_acc"]).index) == [
        (1.0, "bp"), (1.0, "alignada"), (1.0, "dfa"), (1.0, "fa"), (5.0, "bp"), (5.0, "alignada"), (5.0, "fa")]


def test_table_cells_show_no_spread_for_one_seed_and_a_dash_when_no_run_finished():
    from impls.common.plotting import _cell
    summary = summary_table(pd.DataFrame({
        "run_id": ["a", "b", "c", "d"], "rule": ["bp", "bp", "fa", "aa"], "final_acc": [90.0, 92.0, 54.3, np.nan],
        "status": ["ok", "ok", "ok", "diverged"]}), ["rule"], ["final_acc"])
    cells = {rule: _cell(row, "final_acc") for rule, row in summary.iterrows()}
    assert cells == {"bp": "91.0 ± 1.4 (n=2)", "fa": "54.3 (n=1)", "aa": "—"}


# --- tab_* figures: the drawn table as HTML for the report ----------------------------------------

class _Cells(HTMLParser):
    """(header, rows) of every <table> of an HTML page, as the browser shows the text (<br> -> newline)."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "br" and self._cell is not None:
            self._cell += "\n"

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None


def html_tables(path):
    parser = _Cells()
    parser.feed(path.read_text())
    return [(rows[0], rows[1:]) for rows in parser.tables]


def html_page_parts(page: str) -> tuple[str, str]:
    """The heading and the small print (``<p class="meta">``) of a page, as text."""
    heading = re.search(r"<h1>(.*?)</h1>", page, re.S)
    meta = re.search(r'<p class="meta">(.*?)</p>', page, re.S)
    return unescape(heading.group(1)), unescape(meta.group(1))


TABLE = {**FIGURE, "target": "tab_nodepert_test", "plot": {"kind": "table", "by": ["rule", "hparams.lr"],
                                                            "metrics": ["final_acc"]}}


def test_a_cell_rounds_its_mean_to_the_last_digit_of_its_two_digit_spread():
    """'13 ± 0.11' (a cpu table cell before) read as less precise than its neighbours: the mean keeps the
    sd's decimals, trailing zeros included, and one seed keeps three significant digits."""
    from impls.common.plotting import spread_text
    assert spread_text(12.96, 0.11, 2) == "12.96 ± 0.11 (n=2)"
    assert spread_text(13.0, 0.11, 2) == "13.00 ± 0.11 (n=2)"
    assert spread_text(11.3341, 0.0283, 2) == "11.334 ± 0.028 (n=2)"
    assert spread_text(91.0, 1.414, 2) == "91.0 ± 1.4 (n=2)"
    assert spread_text(1234.4, 151.0, 3) == "1234 ± 151 (n=3)"
    assert spread_text(13.0, float("nan"), 1) == "13.0 (n=1)" and spread_text(9.714, float("nan"), 1) == "9.71 (n=1)"
    assert spread_text(97.5, 0.0, 2) == "97.5 ± 0 (n=2)"                    # identical seeds
    assert spread_text(90.5, 0.7071, 2, ".2f", ".2f") == "90.50 ± 0.71 (n=2)"   # explicit formats win


def test_table_html_has_the_cells_of_the_summary_and_one_seed_shows_no_spread(tmp_path):
    from impls.common.plotting import _cell

    table = fake_table()
    table = table[~((table["rule"] == "sgd") & (table["lr"] == 0.1) & (table["seed"] == 1))]   # one seed left
    plot_figure(table, TABLE, tmp_path / "t.png", tmp_path / "t.pdf", html=tmp_path / "t.html")
    [(header, rows)] = html_tables(tmp_path / "t.html")
    summary = summary_table(table, ["rule", "hparams.lr"], ["final_acc"])
    assert header == ["rule", "learning rate", "final test accuracy (%)", "diverged runs"]   # display names
    assert rows == [[display.rule(rule), f"{lr:g}", _cell(row, "final_acc"), str(int(row[("runs", "diverged")]))]
                    for (rule, lr), row in summary.iterrows()]
    by_key = {(r[0], r[1]): r[2] for r in rows}
    assert by_key[("SGD", "0.1")] == "16.0 (n=1)"                     # one seed: no ± and no "± 0"
    assert "±" in by_key[("SGD", "0.01")] and "(n=2)" in by_key[("SGD", "0.01")]
    assert by_key[("NP", "1")] == "—"                                     # both seeds diverged
    assert (tmp_path / "t.png").stat().st_size > 5_000                 # the image is still drawn for papers


def test_table_html_escapes_cell_text_and_keeps_line_breaks(tmp_path):
    import matplotlib.pyplot as plt

    from impls.common.plotting import table_html

    fig, ax = plt.subplots()
    ax.table(cellText=[["<script>alert(1)</script>", "a & b"]], colLabels=["rule", "angle\n(deg)"])
    page = table_html(fig, {**TABLE, "title": "|B - B*| <i>"})
    plt.close(fig)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &amp; b" in page and "|B - B*| &lt;i&gt;" in page and "angle<br>(deg)" in page
    (tmp_path / "t.html").write_text(page)
    assert html_tables(tmp_path / "t.html") == [(["rule", "angle\n(deg)"], [["<script>alert(1)</script>", "a & b"]])]


def test_a_tab_figure_without_a_drawn_table_is_a_clear_error(tmp_path):
    figure = {**TABLE, "plot": {"kind": "line", "x": "epoch", "y": "test_acc", "hue": "hparams.lr"}}
    with pytest.raises(ValueError, match="tab_nodepert_test: a tab_\\* figure must draw its table with ax.table"):
        plot_figure(fake_table(), figure, tmp_path / "t.png", tmp_path / "t.pdf", html=tmp_path / "t.html")
    assert not (tmp_path / "t.html").exists()


def test_pepita_accuracy_table_shows_no_spread_for_one_finished_seed():
    import matplotlib.pyplot as plt

    from impls.common.plotting import drawn_tables
    from impls.pepita.figures import accuracy_table

    runs = pd.DataFrame({"run_id": ["b0", "b1", "f0", "f1"], "rule": ["bp", "bp", "fa", "fa"], "arch": "fc1",
                         "dataset": "digits", "final_test_acc": [90.0, 92.0, 80.0, np.nan],
                         "status": ["ok", "ok", "ok", "diverged"]})
    fig = accuracy_table(runs, {**FIGURE, "paper": "pepita", "target": "tab_pepita_accuracy"})
    [(header, rows)] = drawn_tables(fig)
    plt.close(fig)
    assert header == ["rule", "fc1 net, digits (scikit-learn)"]                         # display names
    assert rows == [["BP", "91.00 ± 1.00 (n=2)"], ["FA", "80.00 (n=1), 1 of 2 diverged"]]   # population sd


def test_table_html_right_aligns_a_column_of_numbers_as_a_whole():
    """bpfree's grid showed "500" right and "500x5" left in one column: a column whose every value starts
    with a number (a dash or an empty cell is no value) is right-aligned, a column with a name in it is not."""
    import re

    from impls.common.html_tables import table_page

    page = table_page("t", "m", [(["rule", "hidden units", "test error (%)", "note"],
                                  [["BP", "500", "11.5 (n=1)", "—"], ["DRTP", "500x5", "—", "BP 2"],
                                   ["FA", ".5", "-1.0 ± 0.2 (n=2)", "3"]])])
    aligned = [re.findall(r'<td( class="num")?>', row) for row in re.findall(r"<tr>(.*?)</tr>", page)[1:]]
    assert aligned == [["", ' class="num"', ' class="num"', ""]] * 3
