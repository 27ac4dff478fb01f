"""profiles/slurm on a live SLURM cluster (tests/cluster/start_slurm.sh starts one; ci_slurm.sh runs these).

Opt-in: skipped unless CREDITBENCH_SLURM_CLUSTER=1 (ci_slurm.sh sets it), so that `make test` never submits
jobs to a cluster that happens to run on the machine (e.g. another session's ci_slurm.sh); skipped, with the
reason, when no cluster answers (`scontrol ping`) or it lacks the CI account. A toy workflow
goes through `--profile profiles/slurm --profile tests/cluster/profile`, and sacct shows that the
plugin's resource names reached sbatch; the unedited profile and a wrong account are refused at submission.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, SNAKEMAKE

ACCOUNT = os.environ.get("SLURM_CI_ACCOUNT", "ci")
PARTITION = os.environ.get("SLURM_CI_PARTITION", "ci")


def _cluster_reason() -> str | None:
    if os.environ.get("CREDITBENCH_SLURM_CLUSTER") != "1":
        return ("submits SLURM jobs: set CREDITBENCH_SLURM_CLUSTER=1 with a cluster running "
                "(tests/cluster/ci_slurm.sh does both)")
    if not shutil.which("scontrol") or not shutil.which("sacct"):
        return "no SLURM client commands (start one with: sudo tests/cluster/start_slurm.sh)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
        if ping.returncode != 0 or "UP" not in ping.stdout:
            return "no SLURM cluster answers `scontrol ping` (start one with: sudo tests/cluster/start_slurm.sh)"
        acct = subprocess.run(["sacctmgr", "-n", "-P", "list", "account", ACCOUNT, "format=account"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"no SLURM cluster answers ({err})"
    if acct.stdout.strip() != ACCOUNT:
        return f"SLURM accounting has no account {ACCOUNT!r} (tests/cluster/start_slurm.sh creates it)"
    return None


REASON = _cluster_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=str(REASON))

# Shaped like the workflow: `train` declares its own threads (as train.smk does) and has set-threads and
# set-resources entries in the profiles; `other` is a submitted rule without them (it gets
# default-resources); `figure` is a localrule after train and must run on the submitting host.
TOY = """
localrules: all, figure
rule all:
    input: "figure.txt", "other.txt"
rule train:
    output: "train.txt"
    threads: 2
    shell: "echo $SLURM_JOB_ID $SLURM_CPUS_PER_TASK > {output}"
rule other:
    output: "other.txt"
    shell: "echo $SLURM_JOB_ID > {output}"
rule figure:
    input: "train.txt"
    output: "figure.txt"
    shell: "echo ${{SLURM_JOB_ID:-none}} > {output}"
"""


def _toy(tmp_path: Path) -> Path:
    (tmp_path / "Snakefile").write_text(TOY)
    return tmp_path


def _snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def _sacct(jobid: str) -> dict[str, str]:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", jobid, "-o", "State,Account,Partition,Timelimit,ReqMem,AllocCPUS,Comment%200"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip().splitlines()
    assert out, f"sacct does not list job {jobid}"
    keys = ["state", "account", "partition", "timelimit", "reqmem", "cpus", "comment"]
    return dict(zip(keys, out[0].split("|")))


def test_profile_requests_reach_sbatch(tmp_path):
    wd = _toy(tmp_path)
    proc = _snakemake(wd, "--profile", str(REPO / "profiles/slurm"),
                      "--profile", str(REPO / "tests/cluster/profile"), "all")
    assert proc.returncode == 0, proc.stderr[-4000:]
    fields = (wd / "train.txt").read_text().split()
    assert len(fields) == 2, f"the train job ran outside SLURM (no SLURM_JOB_ID): {fields}"
    train = {"job": fields[0], "cpus": fields[1]}
    job = _sacct(train["job"])
    # overlay's set-resources train: runtime 30, mem_mb 3000; set-threads train 1 (replacing the rule's
    # threads: 2) -> cpus_per_task
    assert job["state"] == "COMPLETED"
    assert job["account"] == ACCOUNT and job["partition"] == PARTITION
    assert job["timelimit"] == "00:30:00", job
    assert job["reqmem"].rstrip("Mn") in ("3000", "2.93G"), job
    assert job["cpus"] == "1" and train["cpus"] == "1", (job, train)
    assert job["comment"].startswith("rule_train"), job
    # a submitted rule without per-rule entries gets the overlay's default-resources: runtime 15, mem_mb 2000
    other = _sacct((wd / "other.txt").read_text().strip())
    assert other["state"] == "COMPLETED" and other["comment"].startswith("rule_other"), other
    assert other["account"] == ACCOUNT and other["partition"] == PARTITION
    assert other["timelimit"] == "00:15:00", other
    assert other["reqmem"].rstrip("Mn") in ("2000", "1.95G"), other
    # the localrule ran on this host, outside any SLURM job
    assert (wd / "figure.txt").read_text().strip() == "none"
    # the overlay keeps the SLURM logs of successful jobs
    assert list((wd / "logs/slurm/rule_train").rglob("*.log")), "no SLURM log kept for the train job"


def test_unedited_profile_is_refused_at_submission(tmp_path):
    """profiles/slurm as shipped (EDIT_ME_account) must not submit anything anywhere."""
    wd = _toy(tmp_path)
    proc = _snakemake(wd, "--profile", str(REPO / "profiles/slurm"), "--config", "platform=cpu", "--", "all")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "EDIT_ME_account" in out and "invalid" in out.lower(), out[-3000:]
    assert not (wd / "train.txt").exists()


def test_unknown_account_is_refused_by_slurm():
    """Associations are enforced, as on real sites: sbatch itself refuses an unknown account."""
    proc = subprocess.run(["sbatch", "-A", "no_such_account", "-p", PARTITION, "--wrap", "true"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Invalid account" in proc.stderr


def test_scancel_shows_as_cancelled_by_uid_in_sacct():
    """Why profiles/README.md says not to `scancel` a job snakemake watches: sacct reports the state as
    'CANCELLED by <uid>', which snakemake-executor-plugin-slurm 2.8.0 compares verbatim with its end
    states ('CANCELLED', 'FAILED', ...), so it keeps waiting for the job. `scancel --signal=TERM --full`
    instead ends the job as FAILED, which the plugin sees (ci_slurm.sh relies on it)."""
    import time

    def submit() -> str:
        return subprocess.run(["sbatch", "--parsable", "-A", ACCOUNT, "-p", PARTITION, "--mem", "100", "-t", "2",
                               "-o", "/dev/null", "--wrap", "srun sleep 120"],
                              capture_output=True, text=True, check=True, timeout=60).stdout.strip()

    def final_state(jobid: str) -> str:
        for _ in range(120):
            state = subprocess.run(["sacct", "-X", "-n", "-P", "-j", jobid, "-o", "State"],
                                   capture_output=True, text=True, timeout=60).stdout.strip()
            if state and state not in ("PENDING", "RUNNING"):
                return state
            time.sleep(0.5)
        return state

    def started(jobid: str) -> None:
        for _ in range(120):
            if subprocess.run(["squeue", "-h", "-j", jobid, "-o", "%T"], capture_output=True, text=True,
                              timeout=60).stdout.strip() == "RUNNING":
                time.sleep(1)
                return
            time.sleep(0.5)

    cancelled, signalled = submit(), submit()
    started(cancelled)
    subprocess.run(["scancel", cancelled], check=True, timeout=60)
    started(signalled)
    subprocess.run(["scancel", "--signal=TERM", "--full", signalled], check=True, timeout=60)
    assert final_state(cancelled).startswith("CANCELLED by ")
    assert final_state(signalled) == "FAILED"
