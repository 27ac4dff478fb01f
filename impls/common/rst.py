"""Plain text made safe for the reStructuredText of the Snakemake report.

Caller: ``workflow/rules/figures.smk`` (the ``rst`` param of the ``figure`` rule), whose values
``workflow/report/figure.rst`` inserts. Snakemake renders a caption template with Jinja and then
docutils reads the result as reStructuredText, so a caption such as ``|B - B*|`` would be taken
for a substitution reference and shown as a "System Message: ERROR/3" box. Text from
``paper.yaml`` is prose, never markup: it is escaped here and shows literally.
"""
from __future__ import annotations

import re
from typing import Any

#: every ASCII punctuation character; a backslash before any of them makes docutils show it as
#: itself, and escaping all (not a chosen few) also disarms list markers (``- ``, ``1. ``, ``#.``),
#: section underlines, comments (``..``), line blocks (``| ``) and literal blocks (``::``)
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def rst_text(text: Any) -> str:
    """``text`` as reStructuredText that renders as exactly ``text`` (whitespace runs, newlines
    included, become one space: a caption is one paragraph), e.g. ``|B - B*|`` -> ``\\|B \\- B\\*\\|``."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))


def figure_caption_fields(figure) -> dict[str, str]:
    """The free-text fields of a ``plan.Figure`` that its report caption shows, escaped."""
    return {name: rst_text(getattr(figure, name)) for name in ("paper", "label", "title", "caption", "note")}
