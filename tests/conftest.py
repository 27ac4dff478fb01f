"""Shared fixtures: the repository, a scratch copy of it for Snakemake runs, cached digits."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def copy_repo(dest: Path) -> Path:
    """Copy the tracked and untracked-but-not-ignored files of the repo (no results, no venv)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A fresh copy of the workflow to run Snakemake in (outputs never touch the real repo)."""
    return copy_repo(tmp_path / "repo")


#: Snakemake imports every installed executor plugin at start-up, and the SLURM plugin then runs
#: `scontrol show config` with a 10 s timeout. On a host with the SLURM client but no reachable
#: controller (this project's CI machine between cluster tests) that is a 9 s wait per Snakemake
#: start. Local runs never use SLURM, so their scontrol reads an empty configuration and fails at
#: once (a missing file would not do: scontrol then looks for a controller through DNS, for a
#: minute). The cluster tests (tests/cluster) do not go through this helper.
LOCAL_ENV = {"SLURM_CONF": "/dev/null"}


def run_snakemake(cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Snakemake with the local executor, in ``cwd``."""
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **LOCAL_ENV})


#: where the smoke DAG is built and kept, if set (CI: for tests/cluster/ci_slurm.sh's local reference)
SMOKE_DAG_DIR_ENV = "CREDITBENCH_SMOKE_DAG_DIR"


@pytest.fixture(scope="session")
def smoke_dag(tmp_path_factory) -> Path:
    """The whole smoke DAG, built once per test session and shared by the end-to-end tests:
    `snakemake --cores 2 all` (every figure and table of every configured paper, and the scorecard),
    then `--report results/report.html`, in a fresh copy of the repo. Tests only read it; one that
    runs Snakemake in it must not change what it built. Its tests all live in tests/test_e2e.py:
    `make test` distributes whole files over its pytest-xdist workers (--dist loadfile), so one
    worker builds the DAG once. Returns the copy's root: a temporary directory, or
    $CREDITBENCH_SMOKE_DAG_DIR (which must not exist yet) where CI keeps it for the SLURM step's
    comparison with a local run (.ci/run, tests/cluster/ci_slurm.sh)."""
    keep = os.environ.get(SMOKE_DAG_DIR_ENV)
    if keep and Path(keep).exists():
        raise FileExistsError(f"{SMOKE_DAG_DIR_ENV}={keep} exists: the smoke DAG is built in a new directory")
    root = copy_repo(Path(keep) if keep else tmp_path_factory.mktemp("smoke-dag") / "repo")
    done = run_snakemake(root, "--cores", "2", "all", timeout=3600)
    assert done.returncode == 0, done.stderr[-5000:]
    report = run_snakemake(root, "--cores", "1", "all", "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-5000:]
    return root


@pytest.fixture(scope="session")
def datasets_dir(tmp_path_factory) -> Path:
    """resources/datasets with digits cached (the smoke dataset)."""
    from impls.common.datasets import prepare_dataset

    out = tmp_path_factory.mktemp("datasets")
    prepare_dataset("digits", out / "digits.npz")
    return out


#: why the TFDS tests skip where the optional extra is absent (`make test` installs it)
TFDS_MISSING = "the optional TFDS extra is not installed (make tfds, or pip install -c requirements.lock -r requirements-tfds.txt)"
#: examples per split of the Fashion-MNIST TFDS dataset the tests build (the whole set takes minutes)
TFDS_FASHION_EXAMPLES = 2000


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> Path:
    """A TFDS data dir built offline once per test session, as ``python -m impls.common.tfds_data prepare``
    builds one: ``creditbench_digits`` (all 1,797 digits) and ``fashion_mnist`` from the IDX files of
    Debian's dataset-fashion-mnist, the first TFDS_FASHION_EXAMPLES examples of each split."""
    pytest.importorskip("tensorflow_datasets", reason=TFDS_MISSING)
    from impls.common import tfds_data
    from impls.common.datasets import DEFAULT_FASHION_MNIST_DIR

    if not Path(DEFAULT_FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"{DEFAULT_FASHION_MNIST_DIR} is missing (apt-get install dataset-fashion-mnist)")
    out = tmp_path_factory.mktemp("tfds")
    tfds_data.build("digits", out)
    tfds_data.build("fashion_mnist", out, idx_dir=DEFAULT_FASHION_MNIST_DIR, max_examples=TFDS_FASHION_EXAMPLES)
    return out


def configured_claims(root: Path) -> list[dict]:
    """Every claim of every paper in root's config/config.yaml, in scorecard order."""
    import yaml

    papers = yaml.safe_load((root / "config" / "config.yaml").read_text())["papers"]
    return [c for p in papers for c in yaml.safe_load((root / "papers" / p / "paper.yaml").read_text()).get("claims", [])]
