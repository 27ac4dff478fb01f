"""Tables as HTML pages for the Snakemake report: a tab_* figure's table, and the scorecard.

Caller: impls.common.plotting (:func:`table_page`, for tab_* figures) and workflow/scripts/scorecard.py
(:func:`scorecard_page`).
Returns: one self-contained HTML document per table: inline CSS and JavaScript, nothing fetched from
the network (the report must work offline; Snakemake shows an HTML result in an iframe). Every cell
is HTML-escaped; a line break inside a cell (matplotlib tables wrap headers with ``\\n``) becomes
``<br>``. The scorecard page sorts by any column (click its header) and filters by paper, claim
scale, verdict and free text.
"""
from __future__ import annotations

import re
from html import escape
from typing import Iterable, Sequence

import pandas as pd

#: a cell that starts with a number (a sign, digits or a decimal point, then a digit)
NUMBER_START = re.compile(r"^[-+−]?\.?\d")

STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1em; color: #222; }
h1 { font-size: 1.2em; margin: 0 0 .3em; }
p.meta { color: #555; margin: 0 0 .8em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
"""

SCORECARD_STYLE = """
th { cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
.controls { display: flex; flex-wrap: wrap; gap: .8em; align-items: center; margin: 0 0 .8em; }
.controls label { display: flex; gap: .3em; align-items: center; }
td.verdict { white-space: nowrap; }
tr td.v-reproduced { background: #c8e6c9; }
tr td.v-not-reproduced { background: #ffcdd2; }
tr td.v-unverified-paper-number { background: #fff9c4; }
tr td.v-not-run-at-this-scale { background: #eeeeee; }
"""

# sort on the text of a cell, numbers as numbers ("10" after "9"); filter on data-* attributes and text
SCORECARD_SCRIPT = """
(function () {
  const table = document.getElementById("scorecard");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const filters = Array.from(document.querySelectorAll("[data-filter]"));
  const text = document.getElementById("text-filter");
  const shown = document.getElementById("shown");
  const collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});

  function applyFilters() {
    const needle = text.value.trim().toLowerCase();
    let n = 0;
    for (const row of rows) {
      const ok = filters.every(f => f.value === "" || row.getAttribute("data-" + f.dataset.filter) === f.value)
        && (needle === "" || row.textContent.toLowerCase().includes(needle));
      row.hidden = !ok;
      n += ok;
    }
    shown.textContent = n + " of " + rows.length + " claims shown";
  }

  function sortBy(th) {
    const col = th.cellIndex;
    const dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    for (const other of table.tHead.rows[0].cells) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", dir);
    const sign = dir === "ascending" ? 1 : -1;
    rows.sort((a, b) => sign * collator.compare(a.cells[col].textContent, b.cells[col].textContent));
    for (const row of rows) body.appendChild(row);
  }

  for (const th of table.tHead.rows[0].cells) th.addEventListener("click", () => sortBy(th));
  for (const f of filters) f.addEventListener("change", applyFilters);
  text.addEventListener("input", applyFilters);
  applyFilters();
})();
"""

#: scorecard columns shown, in order (the CSV keeps every column; scale_run is the page's scale)
SCORECARD_COLUMNS = ["paper", "figure", "label", "claim_id", "claim", "claim_scale", "paper_value", "tolerance",
                     "provenance", "ours", "verdict"]
#: the scorecard's <select> filters: column -> the label of its control
SCORECARD_FILTERS = {"paper": "paper", "claim_scale": "claim scale", "verdict": "verdict"}


def cell_html(value) -> str:
    """One cell's text, escaped; line breaks kept as <br>; a missing value (NaN, None) is empty."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return "<br>".join(escape(line) for line in str(value).split("\n"))


def _is_number(text: str) -> bool:
    """Whether a cell reads as a number: "0.001", "500x5" and "11.5 ± 0.3 (n=3)" do, "BP" does not."""
    return bool(NUMBER_START.match(text))


def _numeric_columns(rows: Sequence[Sequence]) -> list[bool]:
    """Per column, whether every cell with a value reads as a number (a dash or an empty cell is no value):
    such a column is right-aligned as a whole, so that "500" and "500x5" line up."""
    columns = list(zip(*rows))
    return [any(_has_value(v) for v in column) and all(_is_number(str(v)) for v in column if _has_value(v))
            for column in columns]


def _has_value(value) -> bool:
    return cell_html(value) not in ("", "—")


def _rows_html(rows: Iterable[Sequence]) -> str:
    rows = [list(row) for row in rows]
    numeric = _numeric_columns(rows)
    return "\n".join("<tr>" + "".join(
        f'<td class="num">{cell_html(v)}</td>' if is_num else f"<td>{cell_html(v)}</td>"
        for v, is_num in zip(row, numeric)) + "</tr>" for row in rows)


def _page(title: str, meta: str, body: str, style: str = "", script: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>{STYLE}{style}</style>\n</head>\n<body>\n<h1>{escape(title)}</h1>\n"
            f'<p class="meta">{escape(meta)}</p>\n{body}\n'
            + (f"<script>{script}</script>\n" if script else "") + "</body>\n</html>\n")


def _table_html(columns: Sequence[str], rows: Iterable[Sequence]) -> str:
    header = "<tr>" + "".join(f"<th>{cell_html(c)}</th>" for c in columns) + "</tr>"
    return f"<table>\n<thead>{header}</thead>\n<tbody>\n{_rows_html(rows)}\n</tbody>\n</table>"


def table_page(title: str, meta: str, tables: Iterable[tuple[Sequence[str], Iterable[Sequence]]]) -> str:
    """A page of plain tables, one per ``(columns, rows)``: ``columns`` as the header, one <tr> per row."""
    return _page(title, meta, "\n".join(_table_html(columns, rows) for columns, rows in tables))


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in str(text).lower())


def _select(column: str, label: str, values: Iterable[str]) -> str:
    options = "".join(f'<option value="{escape(v, quote=True)}">{escape(v)}</option>' for v in values)
    return (f'<label>{escape(label)} <select data-filter="{_slug(column)}">'
            f'<option value="">all</option>{options}</select></label>')


def scorecard_page(card: pd.DataFrame) -> str:
    """The scorecard as a sortable, filterable table; the verdict cell is coloured by verdict."""
    scale = card["scale_run"].iloc[0] if len(card) else "?"
    counts = card["verdict"].value_counts()
    meta = (f"{len(card)} claims at scale {scale}: "
            + (", ".join(f"{v} {n}" for v, n in counts.items()) or "none")
            + ". Click a column header to sort; the CSV beside this page holds the same rows.")
    controls = "".join(_select(col, label, sorted(card[col].astype(str).unique()))
                       for col, label in SCORECARD_FILTERS.items())
    controls = (f'<div class="controls">{controls}<label>text <input id="text-filter" type="search" '
                f'placeholder="filter rows"></label><span id="shown"></span></div>')
    header = "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in SCORECARD_COLUMNS) + "</tr>"
    rows = []
    for _, row in card.iterrows():
        data = "".join(f' data-{_slug(c)}="{escape(str(row[c]), quote=True)}"' for c in SCORECARD_FILTERS)
        cells = "".join(f'<td class="verdict v-{_slug(row[c])}">{cell_html(row[c])}</td>' if c == "verdict"
                        else f"<td>{cell_html(row[c])}</td>" for c in SCORECARD_COLUMNS)
        rows.append(f"<tr{data}>{cells}</tr>")
    table = (f'<table id="scorecard">\n<thead>{header}</thead>\n<tbody>\n' + "\n".join(rows)
             + "\n</tbody>\n</table>")
    return _page(f"Reproduction scorecard at scale {scale}", meta, controls + "\n" + table,
                 SCORECARD_STYLE, SCORECARD_SCRIPT)
