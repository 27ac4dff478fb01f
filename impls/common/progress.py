"""Snakemake's output -> one line per figure and step: which figures are being built, how far along.

    snakemake --cores all all 2>&1 | tee logs/make-run.log | python -m impls.common.progress

Caller: the Makefile's ``run`` target. Snakemake prints a block per job ("rule train:" ... "jobid: 7",
"wildcards: paper=nodepert, job=nodepert-33x-..."), then "Finished jobid: 7 (Rule: train)" and
"12 of 475 steps (3%) done". Those lines alone do not say which figure a train job serves (one job
trains batches of several figures), so the figure -> train jobs map comes from the plan
(impls.common.plan, built from the same config as the run). A figure counts its train jobs plus its
own plot job; train jobs whose record (``results/<paper>/jobs/<job>.json``) exists before the run
count as done until Snakemake starts them again. Printed, with the time:

    09:41:33 [1 of 4 steps] training nodepert-33x-ba51715442 for fig_nodepert_lr, fig_nodepert_depth and 9 more
    09:44:10 [2 of 4 steps] fig_nodepert_lr: 1 of 2 jobs done
    09:44:12 [3 of 4 steps] fig_nodepert_lr: plotting
    09:44:15 [4 of 4 steps] fig_nodepert_lr: built (results/nodepert/fig_nodepert_lr.png)

A job's "done" lines carry the step count Snakemake prints right after it finished.

Errors, "Nothing to be done" and Snakemake's own error summary lines pass through unchanged.
"""
from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Mapping, TextIO

JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):$")
JOB_FIELD = re.compile(r"^\s+(jobid|wildcards): (.*)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")
STEPS = re.compile(r"^(\d+) of (\d+) steps \(\d+%\) done")
PASS_THROUGH = re.compile(r"^(Error|Nothing to be done|Exiting because|WorkflowError|MissingOutputException|"
                          r"Shutting down|Complete log|.*Exception)")
#: figures named in a "training ... for" line before "and N more"
SHOWN_FIGURES = 3


def _wildcards(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(", ") if "=" in part)


class ProgressFilter:
    """Turns Snakemake's output, line by line (``feed``), into progress lines per figure.

    ``figure_jobs``: figure target -> its train job ids; ``paper_of``: figure target -> paper;
    ``done``: train job ids already trained before the run; ``clock``: the time shown on each line.
    """

    def __init__(self, figure_jobs: Mapping[str, Iterable[str]], paper_of: Mapping[str, str],
                 done: Iterable[str] = (), clock: Callable[[], datetime] = datetime.now):
        self.figure_jobs = {t: list(dict.fromkeys(jobs)) for t, jobs in figure_jobs.items()}
        self.paper_of = dict(paper_of)
        self.figures_of_job: dict[str, list[str]] = {}
        for target, jobs in self.figure_jobs.items():
            for job in jobs:
                self.figures_of_job.setdefault(job, []).append(target)
        self.done = set(done)
        self.built: set[str] = set()
        self.clock = clock
        self.steps = ""
        self._pending: list[str] = []   # what a finished job gave, shown with the step count that follows it
        self._block: dict | None = None
        self._jobs: dict[str, tuple[str, dict[str, str]]] = {}   # Snakemake jobid -> (rule, wildcards)

    # ------------------------------------------------------------------ parsing
    def feed(self, line: str) -> list[str]:
        """The progress lines (possibly none) that Snakemake's output ``line`` gives."""
        line = line.rstrip("\n")
        out: list[str] = []
        header = JOB_HEADER.match(line)
        if header:
            self._block = {"rule": header.group(1), "wildcards": {}}
            return out
        if self._block is not None:
            if line.startswith(" "):          # the job's indented fields: input, output, jobid, wildcards ...
                field = JOB_FIELD.match(line)
                if field:
                    key, value = field.groups()
                    self._block[key] = value.strip() if key == "jobid" else _wildcards(value.strip())
                return out
            out += self.close()
        finished = FINISHED.match(line)
        steps = STEPS.match(line)
        if steps:
            self.steps = f"[{steps.group(1)} of {steps.group(2)} steps] "
            out += self._flush()
        elif finished:
            self._pending += self._finished(finished.group(1))
        elif PASS_THROUGH.match(line):
            out.append(line)
        return out

    def close(self) -> list[str]:
        """The line of a job block still open (the stream ended right after it)."""
        block, self._block = self._block, None
        return self._flush() + (self._started(block) if block is not None and "jobid" in block else [])

    def _flush(self) -> list[str]:
        pending, self._pending = self._pending, []
        return [self._line(text) for text in pending]

    def _started(self, block: Mapping) -> list[str]:
        rule, wildcards = block["rule"], block["wildcards"]
        self._jobs[block["jobid"]] = (rule, wildcards)
        if rule == "train" and "job" in wildcards:
            job = wildcards["job"]
            self.done.discard(job)
            figures = self.figures_of_job.get(job, [])
            names = ", ".join(figures[:SHOWN_FIGURES]) + (
                f" and {len(figures) - SHOWN_FIGURES} more" if len(figures) > SHOWN_FIGURES else "")
            return [self._line(f"training {job}" + (f" for {names}" if names else ""))]
        if rule == "figure" and "figure" in wildcards:
            return [self._line(f"{wildcards['figure']}: plotting")]
        if rule == "dataset" and "dataset" in wildcards:
            return [self._line(f"preparing dataset {wildcards['dataset']}")]
        if rule == "scorecard":
            return [self._line("scoring the claims (results/scorecard.csv)")]
        return []

    def _finished(self, jobid: str) -> list[str]:
        rule, wildcards = self._jobs.pop(jobid, ("", {}))
        if rule == "train" and "job" in wildcards:
            job = wildcards["job"]
            self.done.add(job)
            return [f"{target}: {self.jobs_done(target)} of {self.jobs_total(target)} jobs done"
                    for target in self.figures_of_job.get(job, [])]
        if rule == "figure" and "figure" in wildcards:
            target = wildcards["figure"]
            self.built.add(target)
            paper = wildcards.get("paper", self.paper_of.get(target, "<paper>"))
            return [f"{target}: built (results/{paper}/{target}.png)"]
        return []

    # ------------------------------------------------------------------ counts
    def jobs_total(self, target: str) -> int:
        """A figure's train jobs plus its plot job."""
        return len(self.figure_jobs.get(target, [])) + 1

    def jobs_done(self, target: str) -> int:
        return sum(job in self.done for job in self.figure_jobs.get(target, [])) + (target in self.built)

    def _line(self, text: str) -> str:
        return f"{self.clock().strftime('%H:%M:%S')} {self.steps}{text}"


def from_plan(config_file: str | Path, root: str | Path = ".", results: str = "results") -> ProgressFilter:
    """A filter for the run of ``config_file``'s configuration: the plan's figure -> train jobs, and
    the train jobs whose record exists already."""
    from impls.common.plan import build_plan, load_yaml

    plan = build_plan(load_yaml(Path(config_file)), root)
    figure_jobs = {t: [j.job_id for j in plan.figure_jobs(t)] for t in plan.figures}
    done = [job.job_id for job in plan.jobs.values()
            if (Path(root) / results / job.paper / "jobs" / f"{job.job_id}.json").exists()]
    return ProgressFilter(figure_jobs, {t: f.paper for t, f in plan.figures.items()}, done)


def run(progress: ProgressFilter, stream: TextIO, out: TextIO) -> None:
    for line in stream:
        for shown in progress.feed(line):
            print(shown, file=out, flush=True)
    for shown in progress.close():
        print(shown, file=out, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/config.yaml", help="the run's config file")
    parser.add_argument("--root", default=".", help="the repository root (paper.yaml files, results/)")
    args = parser.parse_args(argv)
    try:
        progress = from_plan(args.config, args.root)
    except Exception as err:  # noqa: BLE001 -- the run goes on; Snakemake itself reports a bad config
        reason = " ".join(str(err).split())
        print(f"(progress per figure unavailable: {type(err).__name__}: {reason}; see logs/make-run.log)", flush=True)
        progress = ProgressFilter({}, {})
    run(progress, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
