"""Proofs that a DAG went through SLURM and equals a local run (used by tests/cluster/ci_slurm.sh).

  python tests/cluster/check_slurm_run.py dag --slurm-dir A --local-dir B --since 2026-01-01T00:00:00 T...
      - sacct lists the run's train jobs (the plugin's --comment names the rule and its wildcards), all
        COMPLETED, one per job file results/<paper>/jobs/<job>.json in A; no other rule was submitted
        (dataset, figure, scorecard and the targets are localrules)
      - every results/<paper>/runs/<id>/final.json in A records provenance.slurm_job_id, the COMPLETED
        train job whose job file lists the run; none in B does
      - each target's CSV (results/<paper>/<target>.csv) is identical in A and B
  python tests/cluster/check_slurm_run.py preempt --log L --failed J1 --requeued J2 --batch-dir D \
          --job-file F --since T
      - sacct shows J1 FAILED (SIGTERM), J2 (its resubmission) REQUEUED once then COMPLETED, log L (the
        last attempt's) says it resumed from a checkpoint at an epoch >= 1 and reached epoch E/E (E: the
        epochs of D/batch.json's runs);
        D/trained.json and D/evaluated.json exist, and the job file F lists D's batch
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
    if not by_rule.get("train"):
        fail(f"sacct lists no train job since {args.since}")
    # train is the only rule that is not a localrule; the localrules run on the submitting host
    local_rules = {"dataset", "figure", "scorecard", "all"}
    if set(by_rule) & local_rules:
        fail(f"localrules were submitted to SLURM: {set(by_rule) & local_rules}")
    others = {rule: ids for rule, ids in by_rule.items() if rule not in ("train", None)}
    if others:
        fail(f"jobs of rules other than train were submitted to SLURM: {others}")
    bad = {jid: j["state"] for jid, j in jobs.items() if j["rule"] == "train" and j["state"] != "COMPLETED"}
    if bad:
        fail(f"train jobs not COMPLETED: {bad}")

    papers = sorted({paper_of(t, slurm) for t in args.targets})
    n_final = 0
    for paper in papers:
        # the plugin's comment: rule_train_wildcards_<paper>_<job> (the wildcard values joined by "_")
        by_comment = {j["comment"]: jid for jid, j in jobs.items()
                      if j["comment"].startswith(f"rule_train_wildcards_{paper}_")}
        job_files = sorted((slurm / "results" / paper / "jobs").glob("*.json"))
        if not job_files:
            fail(f"no job file under {slurm}/results/{paper}/jobs")
        if len(by_comment) != len(job_files):
            fail(f"{paper}: {len(job_files)} job files but {len(by_comment)} train jobs in sacct: {sorted(by_comment)}")
        train_job_of_run: dict[str, str] = {}
        for path in job_files:
            comment = f"rule_train_wildcards_{paper}_{path.stem}"
            if comment not in by_comment:
                fail(f"{path}: no train job with comment {comment!r} in sacct")
            batches = json.loads(path.read_text())["batches"]
            for evaluated in batches.values():
                for rid in evaluated["runs"]:
                    train_job_of_run[rid] = by_comment[comment]
            print(f"[check] {paper}/jobs/{path.stem}.json: {len(batches)} batches, trained and evaluated by "
                  f"train job {by_comment[comment]}")
        finals = sorted((slurm / "results" / paper / "runs").glob("*/final.json"))
        if not finals:
            fail(f"no final.json under {slurm}/results/{paper}/runs")
        for path in finals:
            prov = json.loads(path.read_text()).get("provenance", {})
            jid = prov.get("slurm_job_id")
            if not jid:
                fail(f"{path}: provenance.slurm_job_id is {jid!r}")
            rid = path.parent.name
            if rid not in train_job_of_run:
                fail(f"{path}: run {rid} is in no job file of {paper}")
            if jid != train_job_of_run[rid]:
                fail(f"{path}: slurm_job_id {jid} is not {train_job_of_run[rid]}, the COMPLETED train job "
                     f"whose job file lists run {rid}")
            n_final += 1
        for path in sorted((local / "results" / paper / "runs").glob("*/final.json")):
            jid = json.loads(path.read_text()).get("provenance", {}).get("slurm_job_id")
            if jid:
                fail(f"{path}: the local run records slurm_job_id {jid}")
    print(f"[check] {n_final} final.json record the SLURM job id of the train job that trained them, "
          f"which sacct lists as COMPLETED ({len(by_rule['train'])} train jobs, no other job submitted)")

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
    epochs = {run["epochs"] for run in json.loads((Path(args.batch_dir) / "batch.json").read_text())["runs"].values()}
    if len(epochs) != 1:
        fail(f"{args.batch_dir}/batch.json: runs with different epochs {sorted(epochs)}")
    total = epochs.pop()
    if not re.search(rf"epoch {total}/{total} ", text):
        fail(f"{args.log} does not reach epoch {total}/{total}")
    for name in ("trained.json", "evaluated.json"):
        if not (Path(args.batch_dir) / name).is_file():
            fail(f"{args.batch_dir}/{name} missing")
    listed = json.loads(Path(args.job_file).read_text())["batches"]  # batch id -> its evaluated.json
    if Path(args.batch_dir).name not in listed:
        fail(f"{args.job_file} does not list batch {Path(args.batch_dir).name}: {sorted(listed)}")
    print(f"[check] job {args.failed} FAILED by SIGTERM and was resubmitted as job {args.requeued}, which SLURM "
          f"requeued and which resumed from checkpoint at epoch {m.group(1)} and COMPLETED the {total} epochs")


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
    p.add_argument("--batch-dir", required=True, help="results/<paper>/batches/<batch> of the train job")
    p.add_argument("--job-file", required=True, help="results/<paper>/jobs/<job>.json, the train job's output")
    p.add_argument("--since", required=True)
    args = ap.parse_args()
    check_dag(args) if args.cmd == "dag" else check_preempt(args)


if __name__ == "__main__":
    main()
