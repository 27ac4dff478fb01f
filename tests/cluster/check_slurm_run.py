"""Proofs that a DAG went through SLURM and equals a local run (used by tests/cluster/ci_slurm.sh).

  python tests/cluster/check_slurm_run.py dag --slurm-dir A --local-dir B --since 2026-01-01T00:00:00 T...
      - sacct lists the run's train/evaluate jobs (the plugin's --comment names the rule), all COMPLETED
      - every results/<paper>/runs/<id>/final.json in A records provenance.slurm_job_id, a job sacct lists
        as a COMPLETED train or evaluate job; none in B does
      - each target's CSV (results/<paper>/<target>.csv) is identical in A and B
  python tests/cluster/check_slurm_run.py preempt --log L --failed J1 --requeued J2 --batch-dir D --since T
      - sacct shows J1 FAILED (SIGTERM), J2 (its resubmission) REQUEUED once then COMPLETED, log L (the
        last attempt's) says it resumed from a checkpoint at an epoch >= 1 and reached epoch 30/30;
        D/trained.json exists
Exits 1 with a message naming what failed.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path


def fail(msg: str) -> None:
    print(f"[check] FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def sacct(since: str) -> dict[str, dict]:
    """JobID -> {name, state, comment, rule} of every job (allocations, -X) since `since`."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", since, "-o", "JobID,JobName%60,State,Account,Partition,Comment%300"],
        capture_output=True, text=True, check=True,
    ).stdout
    jobs = {}
    for line in out.splitlines():
        jobid, name, state, account, partition, comment = line.split("|", 5)
        m = re.match(r"rule_([A-Za-z0-9_]+?)_wildcards", comment) or re.match(r"rule_([A-Za-z0-9_]+)", comment)
        jobs[jobid] = {"name": name, "state": state.split()[0], "account": account,
                       "partition": partition, "comment": comment, "rule": m.group(1) if m else None}
    return jobs


def paper_of(target: str, root: Path) -> str:
    papers = sorted((p.name for p in (root / "papers").iterdir() if p.is_dir()), key=len, reverse=True)
    for paper in papers:
        if re.match(rf"(fig|tab)_{paper}_", target):
            return paper
    fail(f"no paper for target {target}")


def check_dag(args) -> None:
    slurm, local = Path(args.slurm_dir), Path(args.local_dir)
    jobs = sacct(args.since)
    print(f"[check] sacct lists {len(jobs)} jobs since {args.since}:")
    for jobid, j in jobs.items():
        print(f"    {jobid:>6} {j['state']:<10} account={j['account']} partition={j['partition']} {j['comment']}")
    by_rule: dict[str, list[str]] = {}
    for jobid, j in jobs.items():
        by_rule.setdefault(j["rule"], []).append(jobid)
    for rule in ("train", "evaluate"):
        if not by_rule.get(rule):
            fail(f"sacct lists no {rule} job since {args.since}")
    bad = {jid: j["state"] for jid, j in jobs.items() if j["rule"] in ("train", "evaluate") and j["state"] != "COMPLETED"}
    if bad:
        fail(f"train/evaluate jobs not COMPLETED: {bad}")
    local_rules = {"dataset", "batch_spec", "aggregate", "plot"}
    if set(by_rule) & local_rules:
        fail(f"localrules were submitted to SLURM: {set(by_rule) & local_rules}")

    papers = sorted({paper_of(t, slurm) for t in args.targets})
    n_final = 0
    for paper in papers:
        finals = sorted((slurm / "results" / paper / "runs").glob("*/final.json"))
        if not finals:
            fail(f"no final.json under {slurm}/results/{paper}/runs")
        for path in finals:
            prov = json.loads(path.read_text()).get("provenance", {})
            jid = prov.get("slurm_job_id")
            if not jid:
                fail(f"{path}: provenance.slurm_job_id is {jid!r}")
            if jid not in jobs or jobs[jid]["rule"] not in ("train", "evaluate"):
                fail(f"{path}: slurm_job_id {jid} is not a train/evaluate job sacct lists")
            n_final += 1
        for path in sorted((local / "results" / paper / "runs").glob("*/final.json")):
            jid = json.loads(path.read_text()).get("provenance", {}).get("slurm_job_id")
            if jid:
                fail(f"{path}: the local run records slurm_job_id {jid}")
    print(f"[check] {n_final} final.json record a SLURM job id that sacct lists as COMPLETED "
          f"({len(by_rule['train'])} train, {len(by_rule['evaluate'])} evaluate jobs)")

    for target in args.targets:
        paper = paper_of(target, slurm)
        a, b = slurm / "results" / paper / f"{target}.csv", local / "results" / paper / f"{target}.csv"
        for p in (a, b):
            if not p.is_file():
                fail(f"missing {p}")
        if a.read_bytes() == b.read_bytes():
            rows = len(a.read_text().splitlines()) - 1
            print(f"[check] {target}.csv: SLURM and local runs identical ({rows} rows, byte for byte)")
            continue
        import pandas as pd

        da, db = pd.read_csv(a), pd.read_csv(b)
        keys = [c for c in da.columns if c != "value"]
        da, db = (d.sort_values(keys).reset_index(drop=True) for d in (da, db))
        try:
            pd.testing.assert_frame_equal(da, db, check_exact=True)
        except AssertionError as err:
            fail(f"{target}.csv differs between the SLURM run and the local run:\n{err}")
        print(f"[check] {target}.csv: same values in SLURM and local runs (row order differs)")


def check_preempt(args) -> None:
    jobs = sacct(args.since)
    trains = {jid: j for jid, j in jobs.items() if j["rule"] == "train"}
    print("[check] train jobs since the preemption test started:")
    for jid, j in trains.items():
        print(f"    {jid:>6} {j['state']:<10} {j['comment']}")
    first, second = trains.get(args.failed), trains.get(args.requeued)
    if not first or first["state"] != "FAILED":
        fail(f"job {args.failed} (SIGTERM) is not a FAILED train job in sacct: {first}")
    if not second or second["state"] != "COMPLETED" or second["comment"] != first["comment"]:
        fail(f"job {args.requeued} is not a COMPLETED train job of the same batch: {second}")
    if int(args.requeued) <= int(args.failed):
        fail(f"job {args.requeued} was not submitted after job {args.failed}")
    # -D: every record of a requeued job, not just the last one
    history = subprocess.run(["sacct", "-X", "-D", "-n", "-P", "-j", args.requeued, "-o", "JobID,State"],
                             capture_output=True, text=True, check=True).stdout.split()
    states = [line.split("|")[1] for line in history]
    print(f"[check] records of job {args.requeued}: {states}")
    if "REQUEUED" not in states:
        fail(f"job {args.requeued} has no REQUEUED record: {states}")
    text = Path(args.log).read_text()
    m = re.search(r"resumed from checkpoint at epoch (\d+)", text)
    if not m or int(m.group(1)) < 1:
        fail(f"{args.log} does not say 'resumed from checkpoint at epoch N' with N >= 1:\n{text[-2000:]}")
    if not re.search(r"epoch 30/30", text):
        fail(f"{args.log} does not reach epoch 30/30")
    if not (Path(args.batch_dir) / "trained.json").is_file():
        fail(f"{args.batch_dir}/trained.json missing")
    print(f"[check] job {args.failed} FAILED by SIGTERM and was resubmitted as job {args.requeued}, which SLURM "
          f"requeued and which resumed from checkpoint at epoch {m.group(1)} and COMPLETED the 30 epochs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dag")
    d.add_argument("--slurm-dir", required=True)
    d.add_argument("--local-dir", required=True)
    d.add_argument("--since", required=True)
    d.add_argument("targets", nargs="+")
    p = sub.add_parser("preempt")
    p.add_argument("--log", required=True)
    p.add_argument("--failed", required=True, help="job killed by SIGTERM (resubmitted by snakemake)")
    p.add_argument("--requeued", required=True, help="the resubmitted job, requeued by scontrol")
    p.add_argument("--batch-dir", required=True)
    p.add_argument("--since", required=True)
    args = ap.parse_args()
    check_dag(args) if args.cmd == "dag" else check_preempt(args)


if __name__ == "__main__":
    main()
