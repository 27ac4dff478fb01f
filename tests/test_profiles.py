"""Checks of the execution profiles (profiles/*/config.v8+.yaml); the conda envs: tests/test_envs.py.

Every profile key must be an option of the installed snakemake (including the SLURM executor
plugin's --slurm-* options), the workflow profile (profiles/default, read on every run) must set no
key that a site profile sets, the SLURM profile must use the plugin's own resource names and work as
documented without --workflow-profile, and the TPU profile must serialise TPU jobs and assert the TPU
backend. Needs no cluster.
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

from tests.conftest import LOCAL_ENV, run_snakemake

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "profiles"
PROFILE_NAMES = ["default", "local", "slurm", "tpu-vm"]
#: profiles given with --profile; profiles/default is the workflow profile, applied on top of them
SITE_PROFILES = ["local", "slurm", "tpu-vm"]
CI_OVERLAY = ROOT / "tests/cluster/profile/config.v8+.yaml"

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


@pytest.mark.parametrize("name", ["local", "tpu-vm"])
def test_local_profiles_use_all_cores(name):
    profile = load_profile(name)
    assert profile.get("executor", "local") == "local"
    assert str(profile["cores"]) == "all"


def test_workflow_profile_holds_what_holds_everywhere():
    workflow = load_profile("default")
    assert workflow["rerun-incomplete"] is True  # killed or preempted train jobs resume from checkpoints
    assert workflow["keep-going"] is True
    assert set(workflow["rerun-triggers"]) == {"mtime", "params", "input", "software-env", "code"}
    site_only = {"cores", "executor", "jobs", "local-cores", "latency-wait", "restart-times", "config",
                 "resources", "default-resources", "set-resources", "set-threads", "max-threads"}
    assert not site_only & set(workflow), f"site settings in the workflow profile: {sorted(site_only & set(workflow))}"


@pytest.mark.parametrize("path", [PROFILES / n / "config.v8+.yaml" for n in SITE_PROFILES] + [CI_OVERLAY],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_site_profiles_set_no_key_of_the_workflow_profile(path):
    """profiles/default wins key by key over every --profile: a key both set would be silently
    ignored in the site profile (the trap that once needed --workflow-profile none)."""
    shared = set(yaml.safe_load(path.read_text())) & set(load_profile("default"))
    assert not shared, f"{path.relative_to(ROOT)} sets {sorted(shared)}, which profiles/default overrides"


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
        "snakemake --profile profiles/slurm fig_nodepert_lr",
        "snakemake --profile profiles/local all",
        "snakemake --profile profiles/tpu-vm all",
    ):
        assert cmd in text
    assert "--workflow-profile none fig" not in text and "--workflow-profile none pepita" not in text


# ---- the effective settings of the documented commands, and the CI overlay of profiles/slurm ----

SLURM_COMMAND = "snakemake --profile profiles/slurm fig_nodepert_lr"


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


def test_slurm_command_keeps_the_slurm_profile_and_adds_the_workflow_profile():
    """The documented command, as written: profiles/slurm's values hold (no cores capping the threads, and
    so cpus_per_task, of submitted jobs; its latency-wait and set-threads), and Snakemake adds the workflow
    profile profiles/default by itself (its restarts and rerun triggers are in effect)."""
    assert SLURM_COMMAND in (PROFILES / "README.md").read_text()
    assert SLURM_COMMAND in (ROOT / "README.md").read_text().replace(".venv/bin/snakemake", "snakemake")
    profile, workflow = load_profile("slurm"), load_profile("default")
    args = effective_args(SLURM_COMMAND.split()[1:], ROOT)
    assert args.executor == "slurm"
    assert args.cores is None, "cores would cap the threads (cpus_per_task) of submitted jobs"
    assert args.latency_wait == profile["latency-wait"]
    assert args.retries == profile["restart-times"]
    assert {k: v.value for k, v in args.set_threads.items()} == profile["set-threads"]
    assert args.rerun_incomplete is workflow["rerun-incomplete"] is True
    assert args.keep_going is workflow["keep-going"] is True
    assert {t.name.lower().replace("_", "-") for t in args.rerun_triggers} == set(workflow["rerun-triggers"])


def test_slurm_dry_run_resolves_the_train_jobs_resources(workdir):
    """`snakemake --profile profiles/slurm -n fig_nodepert_lr` on the real workflow (no SLURM needed for a
    dry run): Snakemake reads profiles/default as the workflow profile, and the train job gets the rule's
    gpu=1 (platform=gpu from the profile's config) and the profile's set-resources and default-resources.
    (Its threads are checked above: a dry run caps them at its one core.)"""
    proc = run_snakemake(workdir, "--profile", "profiles/slurm", "-n", "fig_nodepert_lr")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Using profiles profiles/slurm and workflow specific profile profiles/default" in out, out[-2000:]
    train = out.split("rule train:", 1)[1].split("\n[", 1)[0]
    resources = dict(item.split("=", 1) for item in
                     re.search(r"resources: (.*)", train).group(1).replace(" ", "").split(","))
    slurm = load_profile("slurm")["set-resources"]["train"]
    assert resources["gpu"] == "1" and resources["tpu"] == "0", resources
    assert resources["slurm_partition"] == slurm["slurm_partition"], resources
    assert resources["runtime"] == str(slurm["runtime"]) and resources["mem_mb"] == str(slurm["mem_mb"]), resources
    assert resources["slurm_account"] == load_profile("slurm")["default-resources"]["slurm_account"], resources


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


def test_ci_overlay_stacks_on_the_slurm_profile():
    """tests/cluster/ci_slurm.sh gives the overlay as a second --profile: its keys replace profiles/slurm's,
    the slurm profile's other keys stay, and the workflow profile is still read."""
    stack = "--profile profiles/slurm --profile tests/cluster/profile"
    assert f"SLURM_PROFILE=({stack})" in (ROOT / "tests/cluster/ci_slurm.sh").read_text()
    command = f"{stack} fig_nodepert_lr"
    overlay, slurm = yaml.safe_load(CI_OVERLAY.read_text()), load_profile("slurm")
    args = effective_args(command.split(), ROOT)
    assert args.executor == slurm["executor"] and args.retries == slurm["restart-times"]
    assert args.latency_wait == overlay["latency-wait"] and args.jobs == overlay["jobs"]
    assert {k: v.value for k, v in args.set_threads.items()} == overlay["set-threads"]
    train = args.set_resources["train"]
    assert set(train) == set(overlay["set-resources"]["train"]), "set-resources is the overlay's, wholly"
    assert train["runtime"].value == overlay["set-resources"]["train"]["runtime"]
    assert args.rerun_incomplete is True and args.keep_going is True  # profiles/default


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
        [str(snakemake_bin()), "--profile", "profiles/tpu-vm", "--cores", "2", "--restart-times", "0",
         "fig_nodepert_lr"],
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
