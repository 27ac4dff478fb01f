"""What every result records about where it came from: versions, device, git commit, job.

Callers: the training driver (``record``: each run's train.json, copied into final.json), the
evaluate entry (``git_commit``), and the figure job (``figure_record``: which commits and packages
trained the figure's runs and which made the figure; ``footer_commits``: the footer's summary).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parents[2]
#: every package that shapes a result: the frameworks that train, the arrays and tables that reduce
#: (numpy, scipy, pandas), the datasets (scikit-learn's digits, torchvision's downloads), the plots
#: (matplotlib, seaborn) and the workflow; one not installed is recorded as null
PACKAGES = ("jax", "jaxlib", "flax", "optax", "torch", "torchvision", "numpy", "scipy", "pandas",
            "scikit-learn", "matplotlib", "seaborn", "snakemake")
#: a run whose record names no commit (trained outside a git checkout, or before commits were recorded)
UNKNOWN = "unknown"
#: how many training commits a figure's footer names before it sums up the rest
FOOTER_COMMITS = 3


@lru_cache(maxsize=1)
def git_commit() -> str:
    """``<sha>`` or ``<sha>-dirty``; ``unknown`` outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str | None]:
    """Python's and each of ``PACKAGES``' installed version (None: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def jax_device() -> dict[str, str]:
    import jax

    dev = jax.devices()[0]
    return {"framework": "jax", "backend": jax.default_backend(), "kind": dev.device_kind,
            "count": str(jax.device_count())}


def cpu_threads() -> int | None:
    """The CPU threads the frameworks were given (``backend.configure_framework`` sets ``OMP_NUM_THREADS``;
    None: their defaults). It shapes results: PyTorch's CPU kernels split their sums by thread, so the same
    run trained with 1 and with 2 threads rounds differently and, over many epochs, can end a little apart."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else None


def record(device: dict[str, str]) -> dict:
    """Provenance block stored in train.json and final.json."""
    return {
        "versions": versions(),
        "device": device,
        "threads": cpu_threads(),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }


def short_commit(commit: str) -> str:
    """``1a2b3c4`` (or ``1a2b3c4-dirty``) of a full commit record."""
    sha, dirty, _ = commit.partition("-dirty")
    return sha[:7] + ("-dirty" if dirty else "")


def run_commit(record: Mapping) -> str:
    """The commit a run's train.json/final.json provenance names; ``UNKNOWN`` only where it names none."""
    commit = (record.get("provenance") or {}).get("git_commit")
    return commit if isinstance(commit, str) and commit and commit != UNKNOWN else UNKNOWN


def training_groups(finals: Mapping[str, Mapping]) -> list[dict]:
    """The runs of ``finals`` (run id -> final.json content) grouped by what trained them: commit,
    package versions, device and CPU threads; most runs first, then by commit."""
    groups: dict[str, dict] = {}
    for run_id, final in finals.items():
        prov = final.get("provenance") or {}
        group = {"git_commit": run_commit(final), "versions": prov.get("versions"), "device": prov.get("device"),
                 "threads": prov.get("threads")}
        key = json.dumps(group, sort_keys=True)
        groups.setdefault(key, {**group, "run_ids": []})["run_ids"].append(run_id)
    return sorted(groups.values(), key=lambda g: (-len(g["run_ids"]), g["git_commit"]))


def figure_record(figure: Mapping, finals: Mapping[str, Mapping]) -> dict:
    """The record of one figure job (its tidy table and its plot): what made it, and what trained
    each of its runs (``finals``: run id -> final.json content)."""
    return {
        "figure": figure["target"], "paper": figure["paper"], "scale": figure["scale"],
        "dataset": figure["dataset"],
        "impl_versions": sorted({str(spec.get("impl_version")) for spec in figure["runs"].values()}),
        "made": {"versions": versions(), "git_commit": git_commit(), "host": socket.gethostname(),
                 "slurm_job_id": os.environ.get("SLURM_JOB_ID")},
        "trained": training_groups(finals),
    }


def footer_commits(record: Mapping) -> str:
    """``trained at 1a2b3c4 (12 runs), 5d6e7f8 (3 runs); plotted at 9a0b1c2`` from a ``figure_record``.

    Commits are summed over the record's groups, most runs first; past ``FOOTER_COMMITS`` the rest
    are counted (the record lists them all). Runs whose record names no commit are counted last as
    ``commit unknown``, never folded into the others.
    """
    runs: dict[str, int] = {}
    for group in record["trained"]:
        runs[group["git_commit"]] = runs.get(group["git_commit"], 0) + len(group["run_ids"])
    unknown = runs.pop(UNKNOWN, 0)
    ranked = sorted(runs.items(), key=lambda item: (-item[1], item[0]))
    parts = [f"{short_commit(c)} ({_runs(n)})" for c, n in ranked[:FOOTER_COMMITS]]
    rest = ranked[FOOTER_COMMITS:]
    if rest:
        parts.append(f"{len(rest)} more commits ({_runs(sum(n for _, n in rest))})")
    if unknown:
        parts.append(f"commit unknown ({_runs(unknown)})")
    made = record["made"]["git_commit"]
    plotted = "at an unknown commit" if made == UNKNOWN else f"at {short_commit(made)}"
    trained = f"trained at {', '.join(parts)}" if parts else "no runs"
    return f"{trained}; plotted {plotted}"


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"
