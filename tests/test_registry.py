"""The rule registry (impls/registry.py) against the papers' specs and the code it points to."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from impls import registry

ROOT = Path(__file__).resolve().parents[1]
#: papers that own rules; the arena runs theirs under its own ids (impls.arena.contenders, tests/test_arena.py)
PAPERS = sorted(p.parent.name for p in ROOT.glob("papers/*/paper.yaml") if p.parent.name != "arena")


def rule_values(node) -> set[str]:
    """Every value of a ``rule`` key anywhere in a paper.yaml: bases, scale blocks, grids (lists of
    rules), grid lists and claim selections, at every scale."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "rule" and isinstance(value, str):
                found.add(value)
            elif key == "rule" and isinstance(value, list):
                found.update(value)
            else:
                found |= rule_values(value)
    elif isinstance(node, list):
        for item in node:
            found |= rule_values(item)
    return found


def accepted_rules(paper: str) -> set[str]:
    """The rule names the paper's options accept (wide_align: its feed-forward and its RNN rules)."""
    options = importlib.import_module(f"impls.{paper}.options")
    return set(options.RULES) | set(getattr(options, "RNN_RULES", {}))


@pytest.mark.parametrize("paper", PAPERS)
def test_every_rule_a_paper_uses_is_registered_for_it(paper):
    used = rule_values(yaml.safe_load((ROOT / "papers" / paper / "paper.yaml").read_text(encoding="utf-8")))
    assert used, f"papers/{paper}/paper.yaml names no rule"
    missing = used - set(registry.rules_of(paper))
    assert not missing, f"papers/{paper}/paper.yaml uses rules not registered for {paper}: {sorted(missing)}"


@pytest.mark.parametrize("paper", PAPERS)
def test_registry_lists_exactly_the_rules_a_spec_may_name(paper):
    assert set(registry.rules_of(paper)) == accepted_rules(paper)


def test_rows_are_well_formed():
    assert len(registry.BY_KEY) == len(registry.RULES), "duplicate (paper, framework, name)"
    for rule in registry.RULES:
        assert rule.framework in registry.FRAMEWORKS, rule
        assert rule.paper in (*PAPERS, registry.SHARED), rule
        assert rule.reference and rule.module.startswith("impls."), rule
        assert rule.paper == registry.SHARED or rule.entry, f"{rule.key} has no entry point"
    assert registry.lookup("bpfree", "dfa").module == "impls.rules.dfa"
    with pytest.raises(KeyError, match="registered: "):
        registry.lookup("pepita", "dfa")


@pytest.mark.parametrize("key", list(registry.BY_KEY))
def test_every_registered_module_imports(key):
    rule = registry.BY_KEY[key]
    for name in (*rule.modules, *([rule.twin] if rule.twin else [])):
        module = importlib.import_module(name)
        assert module.__doc__ and len(module.__doc__) > 200, f"{name}: no docstring with the update equations"
    if rule.entry:
        module_name, attr = rule.entry.split(":")
        assert callable(getattr(importlib.import_module(module_name), attr))


def test_registry_imports_neither_jax_nor_torch():
    code = ("import sys, impls.registry; "
            "print(','.join(m for m in ('jax', 'torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
