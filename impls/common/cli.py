"""``python -m impls.<paper> run|train|evaluate BATCH_JSON...``: the one entry every impl shares.

Caller: the ``train`` rule (workflow/rules/train.smk: ``run``), tests, users.
A paper's ``__main__`` is one ``main(Impl(...))`` call.

A batch file (written by the workflow when it plans, ``Plan.write_batch_files``) lists run ids
and their specs. ``run`` trains and then evaluates each batch given, one after another in this
one process (imports, JIT caches and the persistent compilation cache are shared), and writes
``--job-file`` last, listing every batch's evaluation. ``train`` validates every spec, refuses a
batch whose runs differ outside the paper's ``batch_over`` or a run whose ``spec.json`` on disk is
not its spec (edited by hand), checks the accelerator, skips runs already trained, hands the rest
to the common driver (``impls.common.driver``) with the paper's program in one process, and writes ``trained.json``
beside the batch file. ``evaluate`` reduces each run (``metrics.reduce_run``), lets the paper
add its analyses (the ``Impl.evaluate`` hook: line search, replay, alignment scores ...), writes
each ``final.json`` once, then ``evaluated.json``.
Bad input exits with status 2 and one line on stderr naming what is wrong.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from impls.common import distributed, metrics, provenance
from impls.common import specs as speclib
from impls.common.backend import PLATFORMS, BackendMismatch, configure_framework, frameworks, require_platform
from impls.common.checkpoint import CheckpointMismatch
from impls.common.errors import SpecError
from impls.common.io import atomic_write_json, read_json


@dataclass(frozen=True)
class Impl:
    """A paper's entry: its framework and where its pieces live, as ``"module:name"`` strings that
    are imported only when used (``evaluate`` never loads JAX or PyTorch unless the hook needs it).

    - ``program``: ``make_program(job, options) -> driver.BatchProgram`` for a batch of runs;
    - ``evaluate``: optional ``hook(job, finals, options)`` that adds the paper's analyses to each
      run's final.json content (``finals[run_id]``) before it is written.
    """

    framework: str
    program: str
    evaluate: str | None = None


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


def resolve(dotted: str) -> Callable:
    """``"impls.nodepert.train:make_program"`` -> the object."""
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def _flat(spec: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(spec, dict):
        return {prefix: spec}
    out: dict[str, Any] = {}
    for key, value in spec.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else key))
    return out


def check_batch_over(batch_json: Path, paper: str, run_ids, specs, batch_over: list[str]) -> None:
    """Refuse a batch whose runs differ in a key outside ``batch_over``: the program would train
    every run with the first run's value of that key."""
    first = {k: v for k, v in _flat(specs[0]).items() if not _within(k, batch_over)}
    for rid, spec in zip(run_ids[1:], specs[1:]):
        other = {k: v for k, v in _flat(spec).items() if not _within(k, batch_over)}
        for key in sorted(set(first) | set(other)):
            if first.get(key) != other.get(key):
                raise SpecError(
                    f"{batch_json}: runs {run_ids[0]!r} and {rid!r} differ in '{key}' ({first.get(key)!r} vs "
                    f"{other.get(key)!r}), which is not in papers/{paper}/paper.yaml's batch_over {batch_over}; "
                    f"a batch may only differ in those keys")


def _within(key: str, batch_over: list[str]) -> bool:
    return any(key == k or key.startswith(k + ".") for k in batch_over)


def load_batch(batch_json: Path, results_dir: Path, batch_over: list[str] | None = None) -> BatchJob:
    doc = read_json(batch_json)
    run_ids, specs = [], []
    for rid, spec in doc["runs"].items():
        try:
            spec = speclib.validate_spec(spec)
        except SpecError as err:
            raise SpecError(f"{batch_json}: run {rid!r}: {err}") from None
        if speclib.run_id(spec) != rid:
            raise SpecError(f"{batch_json}: run {rid!r} does not match its spec (id {speclib.run_id(spec)!r}); "
                            f"delete the batch file so the workflow rewrites it")
        if spec["paper"] != doc["paper"]:
            raise SpecError(f"{batch_json}: run {rid!r} has key 'paper' {spec['paper']!r}, the batch is {doc['paper']!r}")
        run_ids.append(rid)
        specs.append(spec)
    if batch_over is not None and run_ids:
        check_batch_over(batch_json, doc["paper"], run_ids, specs, batch_over)
    run_dirs = tuple(results_dir / "runs" / rid for rid in run_ids)
    for run_dir, spec in zip(run_dirs, specs):
        speclib.check_run_spec_file(run_dir / "spec.json", spec)   # never train over, or evaluate, an edited record
    return BatchJob(doc["paper"], doc["batch_id"], Path(batch_json).parent, tuple(run_ids), tuple(specs), run_dirs)


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


def batch_over_of(doc: dict) -> list[str]:
    """The keys a batch's runs may differ in: the batch file's own ``batch_over`` (written by the
    plan); a batch file from before that key existed falls back to papers/<paper>/paper.yaml."""
    if "batch_over" in doc:
        return list(doc["batch_over"])
    from impls.common.plan import load_paper

    return list(load_paper(speclib.REPO_ROOT, doc["paper"])["batch_over"])


def _results_dir(args, batch_json: Path) -> Path:
    return args.results_dir if args.results_dir is not None else batch_json.resolve().parents[2]


def _train(args, impl: Impl, batch_json: Path) -> None:
    from impls.common import driver

    doc = read_json(batch_json)
    job = load_batch(batch_json, _results_dir(args, batch_json), batch_over_of(doc))
    require_platform(impl.framework, args.platform)
    todo = pending(job)
    print(f"[{job.batch_id}] {len(job.run_ids)} runs, {len(todo.run_ids)} to train", file=sys.stderr, flush=True)
    if todo.run_ids:
        driver.train(todo, TrainOptions(args.datasets_dir, args.checkpoint_minutes, args.platform),
                     resolve(impl.program))
    statuses = {rid: read_json(d / "train.json")["status"] for rid, d in zip(job.run_ids, job.run_dirs)}
    atomic_write_json(job.batch_dir / "trained.json", {"batch_id": job.batch_id, "runs": statuses})


def _evaluate(args, impl: Impl, batch_json: Path) -> dict:
    job = load_batch(batch_json, _results_dir(args, batch_json))
    finals = {rid: metrics.reduce_run(d) for rid, d in zip(job.run_ids, job.run_dirs)}
    if impl.evaluate:
        resolve(impl.evaluate)(job, finals, TrainOptions(args.datasets_dir, 0.0, args.platform))
    for rid, run_dir in zip(job.run_ids, job.run_dirs):
        atomic_write_json(run_dir / "final.json", finals[rid])
    evaluated = {
        "batch_id": job.batch_id,
        "runs": {rid: {"status": f["status"], "final_acc": f["final"].get("final_acc")} for rid, f in finals.items()},
        "git_commit": provenance.git_commit(),
    }
    atomic_write_json(job.batch_dir / "evaluated.json", evaluated)
    return evaluated


def _run(args, impl: Impl) -> None:
    """Train then evaluate every batch, in order; the job file is written only when all are done.
    Every batch file is checked before any training starts."""
    for batch_json in args.batch_json:
        load_batch(batch_json, _results_dir(args, batch_json), batch_over_of(read_json(batch_json)))
    batches = {}
    for batch_json in args.batch_json:
        _train(args, impl, batch_json)
        evaluated = _evaluate(args, impl, batch_json)
        batches[evaluated["batch_id"]] = evaluated
    if args.job_file is not None:
        atomic_write_json(args.job_file, {"batches": batches})


COMMANDS = {
    "run": (_run, "train, then evaluate, each batch in turn (what the workflow's train rule calls)"),
    "train": (lambda args, impl: [_train(args, impl, b) for b in args.batch_json], "train each batch"),
    "evaluate": (lambda args, impl: [_evaluate(args, impl, b) for b in args.batch_json],
                 "evaluate each trained batch (final.json of its runs, then evaluated.json)"),
}


def _join_distributed() -> None:
    """Join a multi-process JAX job when the environment describes one (``impls.common.distributed``)."""
    try:
        distributed.initialize_from_env()
    except ValueError as err:
        raise BackendMismatch(str(err)) from None


def main(impl: Impl, argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m impls.<paper>", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("batch_json", type=Path, nargs="+", help="results/<paper>/batches/<batch>/batch.json")
        p.add_argument("--results-dir", type=Path, default=None, help="default: the batch file's results/<paper>")
        p.add_argument("--datasets-dir", type=Path, default=Path("resources/datasets"))
        p.add_argument("--platform", choices=PLATFORMS, default="auto")
        p.add_argument("--checkpoint-minutes", type=float, default=10.0)
        p.add_argument("--threads", type=int, default=None,
                       help="CPU threads the framework may use (default: its own choice, all cores)")
        p.add_argument("--compile-cache", type=Path, default=None,
                       help="JAX persistent compilation cache directory, shared by jobs and repeated runs")
        if name == "run":
            p.add_argument("--job-file", type=Path, default=None,
                           help="written last, when every batch is trained and evaluated (the rule's output)")
    args = parser.parse_args(argv)
    try:
        configure_framework(impl.framework, args.threads, args.compile_cache)
        if "jax" in frameworks(impl.framework):
            _join_distributed()
        COMMANDS[args.command][0](args, impl)
    except (SpecError, BackendMismatch, CheckpointMismatch, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # datasets.DatasetUnavailable has its own message
        if type(err).__name__ == "DatasetUnavailable":
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise
    return 0
