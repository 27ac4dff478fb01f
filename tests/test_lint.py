"""`snakemake --lint` has nothing to say about the workflow (CI runs it, as part of `make test`).

The lints Snakemake checks include: every rule that runs code has a conda env, shell commands use only
the rule's own input/output/params/threads (no variables from outside the rule), params are not
hard-coded prefixes of the rule's files, no absolute paths in the .smk files, and no rule file mixes
rules with functions (those live in workflow/rules/common.smk).
"""
from __future__ import annotations

from tests.conftest import run_snakemake


def test_snakemake_lint_is_clean(workdir):
    proc = run_snakemake(workdir, "--lint")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, f"snakemake --lint:\n{out[-6000:]}"
    assert "Congratulations, your workflow is in a good condition!" in out, out[-3000:]
