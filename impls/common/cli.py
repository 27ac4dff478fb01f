"""``python -m impls.<paper> train|evaluate BATCH_JSON``: the one entry every impl shares.

Caller: the ``train`` and ``evaluate`` rules (workflow/rules/train.smk), tests, users.
A batch file (written by the ``batch_spec`` rule) lists run ids and their specs. ``train``
validates every spec, checks the accelerator, skips runs already trained, hands the rest to
the impl's ``train_batch`` in one process, and writes ``trained.json`` beside the batch file.
``evaluate`` reduces each run to ``final.json`` and writes ``evaluated.json``.
Bad input exits with status 2 and one line on stderr naming what is wrong.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from impls.common import metrics, provenance
from impls.common import specs as speclib
from impls.common.backend import PLATFORMS, BackendMismatch, require_jax_platform, require_torch_platform
from impls.common.errors import SpecError
from impls.common.io import atomic_write_json, read_json


@dataclass(frozen=True)
class TrainOptions:
    datasets_dir: Path
    checkpoint_minutes: float
    platform: str


@dataclass(frozen=True)
class BatchJob:
    """Runs one process trains together. ``run_dirs[i]`` holds the outputs of ``specs[i]``."""

    paper: str
    batch_id: str
    batch_dir: Path
    run_ids: tuple[str, ...]
    specs: tuple[dict, ...]
    run_dirs: tuple[Path, ...]


def load_batch(batch_json: Path, results_dir: Path) -> BatchJob:
    doc = read_json(batch_json)
    run_ids, specs = [], []
    for rid, spec in doc["runs"].items():
        spec = speclib.validate_spec(spec)
        if speclib.run_id(spec) != rid:
            raise SpecError(f"{batch_json}: run {rid!r} does not match its spec (id {speclib.run_id(spec)!r}); "
                            f"delete the batch file so the workflow rewrites it")
        run_ids.append(rid)
        specs.append(spec)
    return BatchJob(doc["paper"], doc["batch_id"], Path(batch_json).parent, tuple(run_ids), tuple(specs),
                    tuple(results_dir / "runs" / rid for rid in run_ids))


def is_trained(run_dir: Path, spec: dict) -> bool:
    """A run is done when train.json exists and its spec.json is the spec asked for."""
    try:
        return (run_dir / "train.json").exists() and read_json(run_dir / "spec.json") == spec
    except (OSError, ValueError):
        return False


def pending(job: BatchJob) -> BatchJob:
    keep = [i for i, (d, s) in enumerate(zip(job.run_dirs, job.specs)) if not is_trained(d, s)]
    return BatchJob(job.paper, job.batch_id, job.batch_dir, tuple(job.run_ids[i] for i in keep),
                    tuple(job.specs[i] for i in keep), tuple(job.run_dirs[i] for i in keep))


def _train(args, train_batch: Callable[[BatchJob, TrainOptions], None]) -> None:
    job = load_batch(args.batch_json, args.results_dir)
    if args.framework == "jax":
        require_jax_platform(args.platform)
    else:
        require_torch_platform(args.platform)
    todo = pending(job)
    print(f"[{job.batch_id}] {len(job.run_ids)} runs, {len(todo.run_ids)} to train", file=sys.stderr, flush=True)
    if todo.run_ids:
        train_batch(todo, TrainOptions(args.datasets_dir, args.checkpoint_minutes, args.platform))
    statuses = {rid: read_json(d / "train.json")["status"] for rid, d in zip(job.run_ids, job.run_dirs)}
    atomic_write_json(job.batch_dir / "trained.json", {"batch_id": job.batch_id, "runs": statuses})


def _evaluate(args) -> None:
    job = load_batch(args.batch_json, args.results_dir)
    finals = {rid: metrics.write_final(d) for rid, d in zip(job.run_ids, job.run_dirs)}
    atomic_write_json(job.batch_dir / "evaluated.json", {
        "batch_id": job.batch_id,
        "runs": {rid: {"status": f["status"], "final_acc": f["final"].get("final_acc")} for rid, f in finals.items()},
        "git_commit": provenance.git_commit(),
    })


def main(train_batch: Callable[[BatchJob, TrainOptions], None], framework: str, argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m impls.<paper>", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "evaluate"):
        p = sub.add_parser(name)
        p.add_argument("batch_json", type=Path, help="results/<paper>/batches/<batch>/batch.json")
        p.add_argument("--results-dir", type=Path, default=None, help="default: the batch file's results/<paper>")
        p.add_argument("--datasets-dir", type=Path, default=Path("resources/datasets"))
        p.add_argument("--platform", choices=PLATFORMS, default="auto")
        p.add_argument("--checkpoint-minutes", type=float, default=10.0)
    args = parser.parse_args(argv)
    args.framework = framework
    if args.results_dir is None:
        args.results_dir = args.batch_json.resolve().parents[2]
    try:
        if args.command == "train":
            _train(args, train_batch)
        else:
            _evaluate(args)
    except (SpecError, BackendMismatch, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # datasets.DatasetUnavailable has its own message
        if type(err).__name__ == "DatasetUnavailable":
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise
    return 0
