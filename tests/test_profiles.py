"""Checks of the execution profiles (profiles/*/config.v8+.yaml); the conda envs: tests/test_envs.py.

Every profile key must be an option of the installed snakemake (including the SLURM executor
plugin's --slurm-* options), the SLURM profile must use the plugin's own resource names, and the
TPU profile must serialise TPU jobs and assert the TPU backend. Needs no Snakefile and no cluster.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from tests.conftest import LOCAL_ENV

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "profiles"
PROFILE_NAMES = ["default", "slurm", "tpu-vm"]

# Resource names snakemake itself or the SLURM executor plugin understands.
SLURM_RESOURCES = {
    "slurm_partition", "slurm_account", "slurm_extra", "slurm_cluster", "clusters",
    "runtime", "mem_mb", "mem_mb_per_cpu", "mem", "disk_mb", "tmpdir",
    "cpus_per_task", "cpus_per_gpu", "gpu", "gpu_model", "gres",
    "constraint", "qos", "nodes", "tasks", "tasks_per_node", "tasks_per_gpu", "mpi",
}
# Names that look right but the plugin silently ignores.
IGNORED_LOOKALIKES = {"gpus", "partition", "account", "time", "walltime", "mem_gb", "cpus", "ntasks"}


def snakemake_bin() -> Path:
    exe = Path(sys.executable).with_name("snakemake")
    if not exe.exists():
        pytest.skip(f"no snakemake next to {sys.executable}")
    return exe


@lru_cache(maxsize=1)
def snakemake_options() -> frozenset[str]:
    """Every long option (without '--') that `snakemake --help` lists, plugins included."""
    out = subprocess.run(
        [str(snakemake_bin()), "--help"], capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, **LOCAL_ENV},
    ).stdout
    return frozenset(re.findall(r"(?<![\w-])--([a-z0-9][a-z0-9-]*)", out))


def load_profile(name: str) -> dict:
    path = PROFILES / name / "config.v8+.yaml"
    assert path.is_file(), f"missing {path}"
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and data, f"{path} is not a non-empty mapping"
    return data


def as_pairs(value) -> dict[str, str]:
    """`[a=1, b=2]` or `{a: 1, b: 2}` (profile list/mapping forms) -> {'a': '1', 'b': '2'}."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    pairs = {}
    for item in value:
        key, sep, val = str(item).partition("=")
        assert sep, f"{item!r} is not KEY=VALUE"
        pairs[key.strip()] = val.strip()
    return pairs


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_profile_keys_are_snakemake_options(name):
    options = snakemake_options()
    unknown = sorted(k for k in load_profile(name) if k not in options)
    assert not unknown, f"profiles/{name}: not options of `snakemake --help`: {unknown}"


TOY_SNAKEFILE = """
localrules: all
rule all:
    input: "trained.txt"
rule train:
    output: "trained.txt"
    threads: 2
    resources: tpu=lambda wc: 1 if config.get("platform") == "tpu" else 0
    shell: "touch {output}"
"""


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_snakemake_accepts_profile(name, tmp_path):
    """A dry run with the profile on a toy workflow: snakemake parses every value."""
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    proc = subprocess.run(
        [str(snakemake_bin()), "--profile", str(PROFILES / name), "--dry-run", "all"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env={**os.environ, **LOCAL_ENV},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rule train:" in proc.stdout + proc.stderr


def test_help_lists_slurm_plugin_options():
    # Guards the test above: without the plugin, --slurm-* keys could not be checked.
    assert "slurm-keep-successful-logs" in snakemake_options()
    assert "executor" in snakemake_options()


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_profile_keys_are_commented(name):
    """Every top-level key has a comment on the line(s) directly above it."""
    lines = (PROFILES / name / "config.v8+.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z][a-z0-9-]*:", line):
            assert i > 0 and lines[i - 1].lstrip().startswith("#"), (
                f"profiles/{name} line {i + 1}: {line!r} has no comment above it"
            )


@pytest.mark.parametrize("name", ["default", "tpu-vm"])
def test_local_profiles_use_all_cores(name):
    profile = load_profile(name)
    assert profile.get("executor", "local") == "local"
    assert str(profile["cores"]) == "all"
    assert profile["rerun-incomplete"] is True
    assert profile["keep-going"] is True


def test_slurm_profile():
    profile = load_profile("slurm")
    assert profile["executor"] == "slurm"
    assert int(profile["jobs"]) > 0
    assert int(profile["local-cores"]) > 0
    assert int(profile["latency-wait"]) >= 60
    assert int(profile["restart-times"]) >= 1
    assert as_pairs(profile["config"]).get("platform") == "gpu"

    defaults = as_pairs(profile["default-resources"])
    for key in ("slurm_partition", "slurm_account", "runtime", "mem_mb", "cpus_per_task"):
        assert key in defaults, f"default-resources lacks {key}"

    per_rule = profile["set-resources"]
    assert "train" in per_rule
    train = per_rule["train"]
    assert int(train["gpu"]) == 1
    assert int(train["runtime"]) > int(defaults["runtime"])
    assert int(train["mem_mb"]) > int(defaults["mem_mb"])
    for rule, resources in per_rule.items():
        assert "gpu" not in resources or "gres" not in resources, f"{rule}: gpu and gres both set"


def workflow_rules() -> dict[str, bool]:
    """Every rule the workflow's .smk files define by name -> whether it is a localrule."""
    rules = {}
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        blocks = re.split(r"^rule\s+(\w+)\s*:", path.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            body = re.split(r"^\S", body, maxsplit=1, flags=re.M)[0]  # up to the next top-level line
            rules[name] = bool(re.search(r"^\s+localrule:\s*True", body, re.M))
    return rules


def test_workflow_rules_parse():
    # guards the test below: the parser finds the rules and their localrule flags
    rules = workflow_rules()
    assert rules.get("train") is False
    assert rules.get("dataset") is True and rules.get("figure") is True and rules.get("all") is True


@pytest.mark.parametrize("path", ["profiles/slurm/config.v8+.yaml", "tests/cluster/profile/config.v8+.yaml"])
def test_slurm_per_rule_settings_name_submitted_rules(path):
    """set-threads and set-resources of the SLURM profile and its CI overlay name only rules that the
    workflow defines and submits (not localrules): an entry for a removed or local rule does nothing."""
    profile = yaml.safe_load((ROOT / path).read_text())
    rules = workflow_rules()
    submitted = {name for name, local in rules.items() if not local}
    for key in ("set-threads", "set-resources"):
        named = set(profile.get(key) or {})
        assert named, f"{path}: no {key}"
        assert named <= submitted, f"{path}: {key} names {sorted(named - submitted)}; submitted rules: {sorted(submitted)}"


def test_slurm_resources_use_plugin_names():
    profile = load_profile("slurm")
    names = set(as_pairs(profile["default-resources"]))
    for resources in profile["set-resources"].values():
        names |= set(resources)
    assert not names & IGNORED_LOOKALIKES, f"names the plugin ignores: {names & IGNORED_LOOKALIKES}"
    assert names <= SLURM_RESOURCES, f"unknown resource names: {names - SLURM_RESOURCES}"
    # Also commented-out examples must not teach the wrong name.
    text = (PROFILES / "slurm" / "config.v8+.yaml").read_text()
    assert not re.search(r"^\s*#?\s*gpus\s*:", text, re.M)


def test_tpu_profile_declares_global_tpu_resource():
    profile = load_profile("tpu-vm")
    assert as_pairs(profile["resources"]).get("tpu") == "1"
    assert as_pairs(profile.get("set-resource-scopes", {"tpu": "global"})).get("tpu") == "global"
    assert as_pairs(profile["config"]).get("platform") == "tpu"


def test_profiles_readme_shows_commands():
    text = (PROFILES / "README.md").read_text()
    for cmd in (
        "snakemake --profile profiles/slurm --workflow-profile none fig_nodepert_lr",
        "snakemake --profile profiles/default all",
        "snakemake --profile profiles/tpu-vm all",
    ):
        assert cmd in text


# ---- the effective settings of the documented commands, and the CI overlay of profiles/slurm ----

SLURM_COMMAND = "snakemake --profile profiles/slurm --workflow-profile none fig_nodepert_lr"


def effective_args(argv: list[str], cwd: Path):
    """snakemake's parsed command line for `argv` run in `cwd` (profiles and workflow profile applied)."""
    import os

    from snakemake.cli import parse_args

    old = Path.cwd()
    os.chdir(cwd)
    try:
        return parse_args(argv)[1]
    finally:
        os.chdir(old)


def test_slurm_command_is_not_overridden_by_the_default_profile():
    """Snakemake reads profiles/default as the workflow profile unless told `--workflow-profile none`;
    its keys would win over profiles/slurm's (cores: all caps threads, and so cpus_per_task, at the
    login node's cores). The documented command keeps profiles/slurm's values."""
    assert SLURM_COMMAND in (PROFILES / "README.md").read_text()
    profile = load_profile("slurm")
    args = effective_args(SLURM_COMMAND.split()[1:], ROOT)
    assert args.executor == "slurm"
    assert args.cores is None, "cores would cap the threads (cpus_per_task) of submitted jobs"
    assert args.latency_wait == profile["latency-wait"]
    assert {k: v.value for k, v in args.set_threads.items()} == profile["set-threads"]


def _edit_marked_keys(text: str) -> set[tuple[str, ...]]:
    """(section, [rule,] key) of every line of a profile directly below a '# EDIT' comment."""
    marked, path, pending = set(), [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# EDIT"):
            pending = True
            continue
        if not stripped or stripped.startswith("#"):
            continue
        indent = (len(line) - len(line.lstrip())) // 2
        key = stripped.split(":", 1)[0]
        path = path[:indent] + [key]
        if pending:
            marked.add(tuple(path))
        pending = False
    return marked


def test_ci_overlay_changes_only_keys_marked_edit():
    """tests/cluster/profile runs profiles/slurm on the CI cluster; apart from CI-only settings (polling,
    logs, jobs) it may change only what profiles/README.md tells a site to edit, plus dropping the GPU."""
    overlay = yaml.safe_load((ROOT / "tests/cluster/profile/config.v8+.yaml").read_text())
    slurm = load_profile("slurm")
    marked = _edit_marked_keys((PROFILES / "slurm" / "config.v8+.yaml").read_text())
    ci_only = {"jobs", "latency-wait", "slurm-status-command", "slurm-init-seconds-before-status-checks",
               "slurm-keep-successful-logs", "slurm-logdir"}
    for key in set(overlay) - {"default-resources", "set-resources", "set-threads"}:
        assert key in ci_only, f"the CI overlay changes {key}, which a site would not edit"
    for key, value in overlay["default-resources"].items():
        assert ("default-resources", key) in marked or slurm["default-resources"].get(key) == value, \
            f"default-resources: {key} is not marked EDIT"
    for rule, threads in overlay["set-threads"].items():
        assert ("set-threads", rule) in marked, f"set-threads: {rule} is not marked EDIT"
    for rule, resources in overlay["set-resources"].items():
        for key in resources:
            assert ("set-resources", rule, key) in marked, f"set-resources: {rule}: {key} is not marked EDIT"
        dropped = set(slurm["set-resources"][rule]) - set(resources)
        assert dropped <= {"gpu"}, f"set-resources: {rule}: the overlay drops {dropped}"


def test_readme_names_every_edit_marked_key():
    readme = (PROFILES / "README.md").read_text()
    section = readme.split("### What a site must edit", 1)[1].split("\n### ", 1)[0]
    marked = _edit_marked_keys((PROFILES / "slurm" / "config.v8+.yaml").read_text())
    assert marked
    for path in marked:
        name = path[0] if path[0] == "set-threads" else path[-1]
        assert name in section, f"profiles/README.md 'What a site must edit' does not name {'/'.join(path)}"


# ---- TPU VM: a JAX job asked for the TPU on a host without one fails loudly ----


def test_tpu_profile_on_a_cpu_host_fails_with_a_clear_error(workdir):
    """`snakemake --profile profiles/tpu-vm` on this CPU-only host: the train job stops with an error
    naming platform=tpu and the CPU backend it found, and writes no results (no silent CPU fallback)."""
    import jax

    if jax.default_backend() == "tpu":
        pytest.skip("this host has a TPU")
    proc = subprocess.run(
        [str(snakemake_bin()), "--profile", "profiles/tpu-vm", "--workflow-profile", "none",
         "--cores", "2", "--restart-times", "0", "fig_nodepert_lr"],
        cwd=workdir, capture_output=True, text=True, timeout=600, env={**os.environ, **LOCAL_ENV},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    logs = "".join(p.read_text() for p in (workdir / "logs/nodepert/train").glob("*.log"))
    assert "this job must run on platform=tpu" in logs, logs[-3000:]
    assert "Refusing to fall back silently" in logs or "JAX cannot initialise it" in logs, logs[-3000:]
    assert "tpu=1" in out.replace(" ", ""), "train jobs must hold the global tpu resource"
    assert not list((workdir / "results/nodepert/batches").glob("*/trained.json"))
    assert not list((workdir / "results/nodepert/jobs").glob("*.json"))
    assert not list((workdir / "results/nodepert/runs").glob("*/final.json"))
