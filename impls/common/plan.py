"""From config + paper.yaml files to figures, runs and batches.

Caller: ``workflow/rules/common.smk`` (once, when Snakemake parses the workflow) and tests.
Returns: a ``Plan``; nothing is written to disk.

- A *figure* expands, at the configured scale, into run specs: the Cartesian product of
  its grid (or the union of several grids), times its seeds, merged over ``base``.
- A *run* is identified by ``specs.run_id``; identical runs of different figures collapse.
- A *batch* is a set of runs that differ only in the paper's ``batch_over`` keys
  (seeds, learning rates, ...): the impl trains it in one vectorised process. Batches are
  formed over every figure of every configured paper, so each run belongs to exactly one
  batch whichever target is asked for.
- A *train job* is what one ``train`` rule job (one Python process) does: train, then evaluate,
  one or more batches of a paper, one after another, sharing the imports and compiled code.
  ``train_jobs[scale].batches`` sets how many (smoke: a paper's batches in one job; cpu and
  paper: one batch per job, so a cluster runs every batch as its own job).
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from impls.common import specs as speclib
from impls.common.errors import SpecError, describe_yaml_error
from impls.common.io import write_json_if_changed


@dataclass(frozen=True)
class Figure:
    paper: str
    target: str
    label: str
    title: str
    caption: str
    scale: str
    dataset: str
    note: str
    plot: dict
    run_ids: tuple[str, ...]
    factors: tuple[str, ...]
    aggregate: str | None = None


@dataclass(frozen=True)
class Batch:
    paper: str
    batch_id: str
    run_ids: tuple[str, ...]
    dataset: str


@dataclass(frozen=True)
class TrainJob:
    paper: str
    job_id: str
    batch_ids: tuple[str, ...]


@dataclass
class Plan:
    scale: str
    papers: dict[str, dict] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    batches: dict[str, Batch] = field(default_factory=dict)
    batch_of: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, TrainJob] = field(default_factory=dict)
    job_of: dict[str, str] = field(default_factory=dict)
    threads: int = 1
    #: dataset id (user-<sha12>) -> the user's .npz it is made from (config ``arena_data``)
    user_data: dict[str, str] = field(default_factory=dict)
    #: shape of one example of each user dataset (images: (H, W) or (H, W, C))
    user_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: target -> why it is not planned (the arena's conv task on a user's data that are not images)
    unplanned: dict[str, str] = field(default_factory=dict)

    def figure_batches(self, target: str) -> list[Batch]:
        ids = dict.fromkeys(self.batch_of[r] for r in self.figures[target].run_ids)
        return [self.batches[b] for b in ids]

    def figure_jobs(self, target: str) -> list[TrainJob]:
        ids = dict.fromkeys(self.job_of[b.batch_id] for b in self.figure_batches(target))
        return [self.jobs[j] for j in ids]

    def batch_file(self, results: str | Path, batch_id: str) -> Path:
        return Path(results) / self.batches[batch_id].paper / "batches" / batch_id / "batch.json"

    def batch_doc(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        # batch_over travels with the batch, so `python -m impls.<paper> train batch.json` checks it
        # without reading papers/<paper>/paper.yaml (an installed package has no papers/ folder)
        return {"paper": batch.paper, "batch_id": batch_id, "batch_over": list(self.papers[batch.paper]["batch_over"]),
                "runs": {r: self.runs[r] for r in batch.run_ids}}

    def write_batch_files(self, results: str | Path) -> None:
        """Write ``<results>/<paper>/batches/<batch>/batch.json`` of every batch whose file is missing
        or different (an unchanged file keeps its mtime, so Snakemake does not retrain it)."""
        for batch_id in self.batches:
            write_json_if_changed(self.batch_file(results, batch_id), self.batch_doc(batch_id))

    def run_dir(self, results: str | Path, run_id: str) -> Path:
        return Path(results) / self.runs[run_id]["paper"] / "runs" / run_id

    def check_run_specs(self, results: str | Path) -> None:
        """Refuse (``SpecError``) a planned run whose ``spec.json`` on disk differs from its spec: a
        hand-edited record would otherwise pass unnoticed, since Snakemake only sees the job files."""
        for run_id, spec in self.runs.items():
            speclib.check_run_spec_file(self.run_dir(results, run_id) / "spec.json", spec)

    def targets(self, paper: str | None = None) -> list[str]:
        return [t for t, f in self.figures.items() if paper is None or f.paper == paper]


#: paper-wide targets named after the paper itself (they predate the ``<paper>_all`` convention)
PAPER_TARGET_NAMES = {"bpfree": "bpfree", "two_routes": "two_routes", "arena": "arena"}


def paper_target(paper: str) -> str:
    """Name of the Snakemake target that builds every figure and table of ``paper``."""
    return PAPER_TARGET_NAMES.get(paper, f"{paper}_all")


def load_yaml(path: Path, shown_as: str | None = None) -> Any:
    """The YAML document at ``path``; a syntax error raises ``SpecError`` in one line naming the file
    (as ``shown_as``, default ``path``), line and column: ``papers/x/paper.yaml:23:16: YAML syntax
    error: mapping values are not allowed here``."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except yaml.YAMLError as err:
        raise SpecError(describe_yaml_error(err, shown_as or str(path))) from None


def check_yaml_syntax(path: str | Path) -> None:
    """Raise ``SpecError`` (file:line:column) if the YAML file at ``path`` does not parse; a missing
    file passes (its reader says so). The Snakefile calls this on config/config.yaml before its
    ``configfile:`` directive, because Snakemake's own loader names neither line nor column."""
    if Path(path).is_file():
        load_yaml(Path(path))


def validate_config(config: Mapping[str, Any]) -> None:
    speclib.validate_against(dict(config), "config", "config")


def load_paper(root: Path, paper: str) -> dict:
    path = root / "papers" / paper / "paper.yaml"
    if not path.exists():
        known = sorted(p.parent.name for p in (root / "papers").glob("*/paper.yaml"))
        raise SpecError(f"config: key 'papers' lists {paper!r} but {path.relative_to(root)} does not exist; "
                        f"papers with a paper.yaml: {', '.join(known)}")
    doc = load_yaml(path, shown_as=str(path.relative_to(root)))
    speclib.validate_against(doc, "paper", f"papers/{paper}/paper.yaml")
    if doc["paper"] != paper:
        raise SpecError(f"papers/{paper}/paper.yaml: key 'paper' is {doc['paper']!r}, expected {paper!r}")
    return doc


def _grid_points(grid: Mapping[str, list] | list) -> list[dict[str, Any]]:
    grids = grid if isinstance(grid, list) else [grid]
    points: list[dict[str, Any]] = []
    for g in grids:
        names = list(g)
        for values in itertools.product(*(g[n] for n in names)):
            points.append(dict(zip(names, values)))
    return points


def expand_figure(paper: str, target: str, fig: Mapping[str, Any], scale: str,
                  seeds_override: int | None = None, dataset_override: str | None = None) -> list[dict]:
    """All validated run specs of one figure at one scale, in grid order (``dataset_override``
    replaces the scale's dataset: the arena on another dataset)."""
    block = fig["scales"][scale]
    if dataset_override is not None:
        block = {**block, "dataset": dataset_override}
    base = speclib.deep_merge(fig.get("base", {}), {
        k: v for k, v in block.items() if k not in ("grid", "seeds", "note")})
    base.update(paper=paper, scale=scale)
    seeds = list(range(seeds_override)) if seeds_override else block["seeds"]
    out = []
    for point in _grid_points(block["grid"]):
        for seed in seeds:
            spec = copy.deepcopy(base)
            spec["seed"] = seed
            for dotted, value in point.items():
                speclib.set_dotted(spec, dotted, value)
            try:
                out.append(speclib.validate_spec(spec))
            except SpecError as err:
                raise SpecError(f"papers/{paper}/paper.yaml, figure {target}, scale {scale}: {err}") from err
    return out


def with_loader(spec: dict, config: Mapping[str, Any], framework: str) -> dict:
    """``spec`` with ``data.loader: tfds`` when config ``data.loader`` reads its dataset through TFDS
    (a new run id: a run records where its data came from); unchanged for the default loader. Only
    the JAX papers stream ImageNet from TFDS."""
    from impls.common.tfds_data import TFDS_NAMES, loader_of

    dataset = spec["dataset"]
    if dataset not in TFDS_NAMES or loader_of(config.get("data", {}), dataset) != "tfds":
        return spec
    if dataset == "imagenet" and framework != "jax":
        raise SpecError(f"config: key 'data.loader' reads imagenet through TFDS, which only the JAX papers stream; "
                        f"{spec['paper']} ({framework}) reads an ImageFolder tree: give data.loader as a mapping "
                        f"without imagenet, or leave {spec['paper']} out of 'papers'")
    spec = copy.deepcopy(spec)
    spec.setdefault("data", {})["loader"] = "tfds"
    return speclib.validate_spec(spec)


def batch_key(spec: Mapping[str, Any], batch_over: list[str]) -> str:
    reduced = copy.deepcopy(dict(spec))
    for dotted in batch_over:
        *parents, leaf = dotted.split(".")
        node = reduced
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)
    return speclib.short_hash(reduced)


def build_plan(config: Mapping[str, Any], root: str | Path) -> Plan:
    """Validate the config and every configured paper.yaml, then expand figures and batches."""
    root = Path(root)
    validate_config(config)
    scale = config["scale"]
    plan = Plan(scale=scale)
    max_runs = int(config.get("max_runs_per_batch") or 64)
    cut = {**DEFAULT_TRAIN_JOBS.get(scale, {}), **(config.get("train_jobs") or {}).get(scale, {})}
    plan.threads = int(cut["threads"])
    for paper in config["papers"]:
        doc = load_paper(root, paper)
        plan.papers[paper] = doc
        override = arena_dataset(config, plan) if paper == "arena" else None
        groups: dict[str, list[str]] = {}
        for target, fig in doc["figures"].items():
            specs = [with_loader(spec, config, doc["framework"])
                     for spec in expand_figure(paper, target, fig, scale, config.get("seeds"), override)]
            why_not = _conv_task_without_images(specs, plan.user_shapes.get(override))
            if why_not:
                plan.unplanned[target] = why_not
                continue
            ids = []
            for spec in specs:
                rid = speclib.run_id(spec)
                if rid not in plan.runs:
                    plan.runs[rid] = spec
                    groups.setdefault(batch_key(spec, doc["batch_over"]), []).append(rid)
                ids.append(rid)
            block = fig["scales"][scale]
            factors = tuple(dict.fromkeys(
                name for point in _grid_points(block["grid"]) for name in point))
            plan.figures[target] = Figure(
                paper=paper, target=target, label=fig["label"], title=fig["title"],
                caption=fig["caption"].strip(), scale=scale, dataset=override or block["dataset"],
                note=_scale_note(block, override, plan), plot=fig["plot"],
                run_ids=tuple(dict.fromkeys(ids)), factors=factors + ("seed",),
                aggregate=fig.get("aggregate"))
        for key, run_ids in groups.items():
            for start in range(0, len(run_ids), max_runs):
                chunk = tuple(run_ids[start:start + max_runs])
                first = plan.runs[chunk[0]]
                batch_id = f"{first['rule']}-{speclib.short_hash(','.join(chunk))}"
                plan.batches[batch_id] = Batch(paper, batch_id, chunk, first["dataset"])
                for rid in chunk:
                    plan.batch_of[rid] = batch_id
        _cut_jobs(plan, paper, int(cut["batches"]))
    return plan


def arena_dataset(config: Mapping[str, Any], plan: Plan) -> str | None:
    """The arena's dataset from config ``arena_data``: None (each scale's own), a dataset name, or a
    user's .npz, checked here (``impls.arena.data.ArenaDataError`` names what is wrong before anything
    is written) and named ``user-<sha12>``; ``plan.user_data`` maps that id to the file for the dataset rule."""
    value = config.get("arena_data")
    if value is None:
        return None
    from impls.arena import data as arena_data
    from impls.arena.options import DATASETS

    if value in DATASETS:
        return value
    if Path(value).suffix != ".npz":
        raise SpecError(f"config: key 'arena_data' is {value!r}: neither a dataset name ({', '.join(DATASETS)}) "
                        f"nor the path of an .npz file")
    dataset_id, plan.user_shapes[dataset_id] = arena_data.user_dataset(value)
    plan.user_data[dataset_id] = str(Path(value).resolve())
    return dataset_id


def _scale_note(block: Mapping[str, Any], override: str | None, plan: Plan) -> str:
    """The note of a figure's scale block; when ``arena_data`` swapped the dataset, it says so first, since the
    note describes the scale's own dataset."""
    note = block.get("note", "")
    if override is None or override == block["dataset"]:
        return note
    data = f"{plan.user_data[override]} ({override})" if override in plan.user_data else override
    return f"trained on {data} (config arena_data), not the scale's {block['dataset']}; the scale's settings: {note}"


def _conv_task_without_images(specs, example_shape) -> str | None:
    """Why the arena's conv task cannot train on a user's dataset whose examples are not images, else None."""
    if example_shape is None or len(example_shape) in (2, 3):
        return None
    if not any((spec.get("model") or {}).get("arch") == "conv" for spec in specs):
        return None
    return (f"the conv net (model.arch: conv) takes images, (H, W) or (H, W, C) per example; config arena_data's "
            f"examples have shape {tuple(example_shape)}")


#: train_jobs of a scale that config.yaml leaves out
DEFAULT_TRAIN_JOBS = {"smoke": {"batches": 64, "threads": 1}, "cpu": {"batches": 1, "threads": 2},
                      "paper": {"batches": 1, "threads": 4}}


def _cut_jobs(plan: Plan, paper: str, batches_per_job: int) -> None:
    """Cut the paper's batches, in plan order, into train jobs of at most ``batches_per_job``.
    A job of one batch is named after it; a larger one ``<paper>-<n>x-<hash of its batch ids>``."""
    ids = [b for b, batch in plan.batches.items() if batch.paper == paper]
    for start in range(0, len(ids), batches_per_job):
        chunk = tuple(ids[start:start + batches_per_job])
        job_id = chunk[0] if len(chunk) == 1 else f"{paper}-{len(chunk)}x-{speclib.short_hash(','.join(chunk))}"
        plan.jobs[job_id] = TrainJob(paper, job_id, chunk)
        for batch_id in chunk:
            plan.job_of[batch_id] = job_id
