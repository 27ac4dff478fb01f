"""Report captions render literally: no docutils "System Message" for any text of any paper.yaml.

Snakemake renders a caption file with Jinja, then docutils reads the result as reStructuredText
(``snakemake/report/__init__.py``: ``env.from_string(caption).render(snakemake=...)`` then
``publish_parts(caption, writer_name="html")``); these tests do the same with the repo's templates.
"""
from __future__ import annotations

import io
from types import SimpleNamespace

import jinja2
import pytest
import yaml
from docutils import nodes
from docutils.core import publish_doctree, publish_parts

from impls.common.plan import build_plan
from impls.common.rst import figure_caption_fields, rst_text
from tests.conftest import REPO

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
ALL_PAPERS = sorted(p.parent.name for p in (REPO / "papers").glob("*/paper.yaml"))
#: the Jinja environment of Snakemake's report
JINJA = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)

NASTY = [
    "|B - B*|", "a_ b_ word_", "`x` and ``y``", "*a* **b** ***c***", "- looks like a list", "1. enumerated",
    "#. auto-enumerated", "I. roman", "(a) letter", "-----", "===", "+----+----+", ".. comment", "..",
    "ends with a colon::", ">>> doctest", "[1]_ and [#]_ footnotes", "<http://example.org>",
    "`link <http://example.org>`_", ":math:`x^2`", "_`target`", "back\\slash\\ and trailing\\",
    "B* = W^T", "x_{l-1}", "|", "*", "**", "`", "_", "__", ":field: body", "-o option",
    "first line\n\n   indented after a blank line", "Fig. 3?", "±0.5 (n=1) — ok", "1.0e-3 and 1e8",
    "|sub|_ and |sub|", "{{ not jinja }}", "text with\ttab",
]


def _doctree(rst: str):
    """docutils' tree of ``rst`` and what it reported (warnings go to the string, not stderr)."""
    stream = io.StringIO()
    return publish_doctree(rst, settings_overrides={"warning_stream": stream}), stream.getvalue()


@pytest.mark.parametrize("text", NASTY)
def test_escaped_text_renders_as_itself(text):
    tree, warnings = _doctree(rst_text(text))
    assert not list(tree.findall(nodes.system_message)) and not warnings, warnings
    assert tree.astext() == " ".join(text.split())


@pytest.mark.parametrize("text", NASTY)
def test_escaped_text_inside_strong_and_emphasis(text):
    tree, warnings = _doctree(f"**{rst_text(text)}** of *{rst_text(text)}* -- {rst_text(text)}")
    assert not list(tree.findall(nodes.system_message)) and not warnings, warnings
    assert tree.astext() == " -- ".join([" of ".join([" ".join(text.split())] * 2), " ".join(text.split())])


def test_unescaped_pipes_are_what_broke_the_report():
    """The control: the raw caption of two_routes gives the error box the escaping removes."""
    html = publish_parts("|B - B*| grows", writer="html", settings_overrides={"warning_stream": io.StringIO()})
    assert "System Message" in html["body"]


def _render(template: str, **context) -> tuple[str, str]:
    """The caption as Snakemake's report shows it (HTML) and as text (docutils' reading of it)."""
    rst = JINJA.from_string((REPO / "workflow" / "report" / template).read_text()).render(**context)
    html = publish_parts(rst, writer="html", settings_overrides={"warning_stream": io.StringIO()})["body"]
    return html, " ".join(_doctree(rst)[0].astext().split())


def _figure_params(fig) -> SimpleNamespace:
    """What the ``figure`` rule passes (workflow/rules/figures.smk), as far as the caption reads it."""
    figure = {"target": fig.target, "scale": fig.scale, "dataset": fig.dataset, "runs": dict.fromkeys(fig.run_ids)}
    return SimpleNamespace(figure=figure, rst=figure_caption_fields(fig))


@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_every_figure_caption_of_every_paper_renders_without_system_messages(scale):
    plan = build_plan({**CONFIG, "papers": ALL_PAPERS, "scale": scale}, REPO)
    assert plan.figures
    for target, fig in plan.figures.items():
        html, shown = _render("figure.rst", snakemake=SimpleNamespace(params=_figure_params(fig), config=CONFIG))
        assert "System Message" not in html and "problematic" not in html, f"{fig.paper} {target}:\n{html}"
        for field in ("label", "title", "caption", "note"):
            assert " ".join(getattr(fig, field).split()) in shown, f"{target}: {field} not shown literally"


def test_workflow_and_scorecard_captions_render_without_system_messages():
    config = {**CONFIG, "papers": ALL_PAPERS}
    for template in ("workflow.rst", "scorecard.rst"):
        html, _ = _render(template, snakemake=SimpleNamespace(config=config))
        assert "System Message" not in html and "problematic" not in html, f"{template}:\n{html}"
    assert ", ".join(ALL_PAPERS) in _render("workflow.rst", snakemake=SimpleNamespace(config=config))[1]
