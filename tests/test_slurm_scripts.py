"""The CI cluster scripts' own logic, without a cluster: tests/cluster/start_slurm.sh tells a running cluster
from a stale pids file (a machine or job that ended before stop_slurm.sh ran). A stale file once made the script
exit 1 without a word (an `exit` inside the check ended the script), and CI failed with no log."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "tests/cluster/start_slurm.sh"


def _state(tmp_path: Path, pids: list[int] | None) -> str:
    if pids is not None:
        (tmp_path / "pids").write_text("".join(f"daemon{i} {pid}\n" for i, pid in enumerate(pids)))
    out = subprocess.run(["bash", str(START), "--state"], env={**os.environ, "SLURM_CI_DIR": str(tmp_path)},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("pids,state", [(None, "none"), ("alive", "running"), ("one_gone", "stale")])
def test_start_slurm_tells_a_running_cluster_from_a_stale_pids_file(tmp_path, pids, state):
    listed = {None: None, "alive": [os.getpid(), os.getppid()], "one_gone": [os.getpid(), _dead_pid()]}[pids]
    assert _state(tmp_path, listed) == state


def test_ci_slurm_leaves_a_cluster_it_did_not_start_and_ends_its_cleanup(tmp_path):
    """Daemons listed by start_slurm.sh run but no slurmctld answers: ci_slurm.sh says so and exits 1, leaving
    them alone. It used to try a start that failed, and its cleanup, under `set -e`, ended at the first log glob
    that matched nothing: no logs, no exit line, and a stop_slurm.sh of daemons it had not started."""
    daemons = [subprocess.Popen(["sleep", "120"]) for _ in range(2)]    # stand-ins for munged, slurmctld ...
    try:
        (tmp_path / "pids").write_text("".join(f"daemon{i} {d.pid}\n" for i, d in enumerate(daemons)))
        (tmp_path / "slurm.conf").write_text("")     # no controller to answer, even where a real cluster runs
        env = {**os.environ, "SLURM_CONF": str(tmp_path / "slurm.conf"), "SLURM_CI_DIR": str(tmp_path),
               "CI_SLURM_SCRATCH": str(tmp_path / "scratch"),
               "SNAKEMAKE": str(Path(sys.executable).parent / "snakemake"),
               "CI_SLURM_DAG": "0", "CI_SLURM_PREEMPT": "0"}
        (tmp_path / "scratch").mkdir()
        out = subprocess.run(["bash", str(ROOT / "tests/cluster/ci_slurm.sh")], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "slurmctld does not answer" in out.stderr, out.stderr
        assert "ci_slurm FAILED: logs" in out.stderr and "] exit 1 (scratch copies in" in out.stdout, out.stdout
        assert all(d.poll() is None for d in daemons), "ci_slurm.sh stopped daemons it had not started"
    finally:
        for d in daemons:
            d.kill()
