"""The repository is self-contained: no tracked file points to documents a clone does not have.

The reproduction notes this suite was built from live outside the repository; what a user needs from
them is in each paper's README (papers/<paper>/README.md) and the main README, in the repository's own
words. A pointer to the outside notes (a path into the sibling shared folder, the design and style notes, or a numbered
section of a paper's notes) would be a dead end for every reader of a clone.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: pointers to documents outside the repository; "spec" + "§N" is a numbered section of the notes
#: (a run spec, spec.json, has no numbered sections). Written as patterns so this file passes too.
OUTSIDE = re.compile(r"\.\./shared|[/]work[/]shared|shared[/]papers|ARCHITECTURE\.md|STYLE\.md|spec\s+(?:\w+\s+)?§")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [REPO / n for n in names.decode().split("\0") if n and (REPO / n).is_file()]


def outside_references() -> list[str]:
    hits = []
    for path in tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:          # binary files (images) cannot hold a pointer worth reading
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}")
    return hits


def test_no_tracked_file_points_outside_the_repository():
    hits = outside_references()
    assert not hits, "pointers to documents a clone does not have:\n" + "\n".join(hits)


def test_the_check_sees_every_kind_of_pointer():
    # assembled from pieces, so that this file does not hold the pointers it looks for
    dot_md, section = ".md", "§"
    for line in ("see ../" + "shared/notes" + dot_md, "/work/" + "shared/notes" + dot_md,
                 "ARCHITECTURE" + dot_md + ", Contracts", "(see STYLE" + dot_md + ")", "(spec " + section + "2.4)",
                 "spec pepita " + section + "4", "Spec: shared/" + "papers/two_routes" + dot_md):
        assert OUTSIDE.search(line), line
    for line in ("its spec.json is the spec asked for", "a run spec's hparams", "conda-prefix: /shared/path"):
        assert not OUTSIDE.search(line), line
