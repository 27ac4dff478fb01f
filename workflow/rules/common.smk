# Read + validate config and papers/*/paper.yaml, expand figures into runs and batches,
# and the input functions the other rule files use. The logic is impls.common.plan (tested).
import sys

sys.path.insert(0, workflow.basedir)

from snakemake.exceptions import WorkflowError

from impls.common.errors import SpecError
from impls.common.plan import build_plan

RESULTS = "results"
DATASETS = "resources/datasets"
# JAX's persistent compilation cache, shared by every train job and by repeated runs
COMPILE_CACHE = "resources/jax-compile-cache"

try:
    PLAN = build_plan(config, workflow.basedir)
except SpecError as err:
    raise WorkflowError(str(err)) from None
# every batch.json, written only where missing or changed (so an unchanged batch is not retrained)
PLAN.write_batch_files(RESULTS)


def _uses_conda():
    try:
        return "conda" in {str(m).lower() for m in workflow.deployment_settings.deployment_method}
    except AttributeError:
        return False


# the interpreter of this Snakemake (the project's .venv), or the rule's conda env
PYTHON = "python" if _uses_conda() else sys.executable
# impls/ importable in every job, whatever the current directory or env
PY_ENV = f"PYTHONPATH={workflow.basedir}${{PYTHONPATH:+:$PYTHONPATH}}"


def paper_env(wildcards):
    """Conda env file of a paper's framework (envs/jax.yaml or envs/torch.yaml)."""
    return f"{workflow.basedir}/envs/{PLAN.papers[wildcards.paper]['framework']}.yaml"


def figure_evaluations(wildcards):
    """The job file of every train job that trains a run of this figure."""
    return [f"{RESULTS}/{j.paper}/jobs/{j.job_id}.json" for j in PLAN.figure_jobs(wildcards.figure)]


def figure_outputs(target):
    """A figure's files; a table (tab_*) also has its HTML rendering (rule ``table``)."""
    fig = PLAN.figures[target]
    exts = ("csv", "png", "pdf", "html") if target.startswith("tab_") else ("csv", "png", "pdf")
    return [f"{RESULTS}/{fig.paper}/{target}.{ext}" for ext in exts]


def report_labels(wildcards, shown_as):
    """The report's columns for a figure: its target, the paper figure, the scale, and whether this
    entry is the image or the HTML table (a tab_* figure has both)."""
    fig = PLAN.figures[wildcards.figure]
    return {"figure": wildcards.figure, "paper figure": fig.label, "scale": fig.scale, "shown as": shown_as}


def paper_figure_outputs(paper):
    return [out for target in PLAN.targets(paper) for out in figure_outputs(target)]


def all_figure_outputs():
    return [out for target in PLAN.targets() for out in figure_outputs(target)]


def train_resources(name):
    """Resources of the train jobs: the accelerator they must hold."""
    platform = config["platform"]
    return {"gpu": 1 if platform == "gpu" else 0, "tpu": 1 if platform == "tpu" else 0}


wildcard_constraints:
    paper="[a-z_]+",
    job="[A-Za-z0-9_.-]+",
    figure="(fig|tab)_[a-z0-9_]+",
    dataset="[a-z0-9_]+",
