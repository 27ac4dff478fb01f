# Read + validate config and papers/*/paper.yaml, expand figures into runs and batches; the
# environment of every shell job; and every input or params function the other rule files use
# (kept here, apart from the rules, as Snakemake's lint asks). The logic is impls.common.plan (tested).
import shlex
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)

from snakemake.exceptions import WorkflowError

from impls.common.datasets import DATASET_NAMES, STREAMED_DATASETS
from impls.common.errors import SpecError
from impls.common.plan import build_plan
from impls.common.rst import figure_caption_fields
from impls.common.tfds_data import DEFAULT_TFDS_DIR, loader_of

RESULTS = "results"
DATASETS = "resources/datasets"
# JAX's persistent compilation cache, shared by every train job and by repeated runs
COMPILE_CACHE = "resources/jax-compile-cache"

try:
    PLAN = build_plan(config, workflow.basedir)
    # a run's spec.json edited by hand (or copied) is refused here, before any job is chosen
    PLAN.check_run_specs(RESULTS)
except SpecError as err:
    raise WorkflowError(str(err)) from None
# every batch.json, written only where missing or changed (so an unchanged batch is not retrained)
PLAN.write_batch_files(RESULTS)
for _target, _why in PLAN.unplanned.items():   # e.g. the arena's conv task on a user's data that are not images
    print(f"note: {_target} is not planned: {_why}", file=sys.stderr)


def _uses_conda():
    try:
        return "conda" in {str(m).lower() for m in workflow.deployment_settings.deployment_method}
    except AttributeError:
        return False


def _shell_prefix():
    """What every shell job runs first: bash strict mode (Snakemake's own default prefix), impls/
    importable whatever the current directory or env, and `python` the interpreter of this
    Snakemake (its venv's bin first on PATH) unless the job runs in its conda env, whose python
    comes first there. Set once here rather than in each command, so a checkout or venv that moves
    changes neither a rule's code nor its params (both rerun triggers)."""
    steps = ["set -euo pipefail", f"export PYTHONPATH={shlex.quote(workflow.basedir)}${{PYTHONPATH:+:$PYTHONPATH}}"]
    if not _uses_conda():
        steps.append(f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH")
    # shell.prefix formats its argument once more: braces are doubled
    return "; ".join(steps).replace("{", "{{").replace("}", "}}") + "; "


shell.prefix(_shell_prefix())


def env_file(name):
    """Conda env file `envs/<name>.yaml` (used with --software-deployment-method conda)."""
    return f"{workflow.basedir}/envs/{name}.yaml"


def paper_env(wildcards):
    """Conda env file of a paper's framework (envs/jax.yaml or envs/torch.yaml); the arena's
    "jax+torch" takes envs/jax.yaml, which holds torch as well."""
    return env_file(PLAN.papers[wildcards.paper]["framework"].split("+")[0])


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


def figure_params(wildcards):
    """What the figure script needs of one figure: its plan entry and the specs of its runs."""
    fig = PLAN.figures[wildcards.figure]
    return {
        "paper": fig.paper, "target": fig.target, "label": fig.label, "title": fig.title,
        "caption": fig.caption, "scale": fig.scale, "dataset": fig.dataset, "note": fig.note,
        "plot": fig.plot, "factors": list(fig.factors), "aggregate": fig.aggregate,
        "runs": {rid: PLAN.runs[rid] for rid in fig.run_ids},
    }


def results_dir(wildcards, output):
    """results/ of a figure job, from its CSV (results/<paper>/<figure>.csv)."""
    return str(Path(output.csv).parents[1])


def claim_targets():
    """Figures with a claim at the configured scale: the scorecard needs their tables."""
    scale = config["scale"]
    wanted = {c["figure"] for doc in PLAN.papers.values() for c in doc.get("claims", [])
              if c.get("scale", "paper") == scale}
    return [t for t in PLAN.targets() if t in wanted]


def job_batch_files(wildcards):
    return [str(PLAN.batch_file(RESULTS, b)) for b in PLAN.jobs[wildcards.job].batch_ids]


def job_datasets(wildcards):
    names = dict.fromkeys(PLAN.batches[b].dataset for b in PLAN.jobs[wildcards.job].batch_ids)
    return [f"{DATASETS}/{name}.npz" for name in names]


def datasets_dir(wildcards, input):
    """resources/datasets of a train job, from its first dataset (every job reads at least one)."""
    return str(Path(input.data[0]).parent)


def imagenet_root_option():
    """`--imagenet-root DIR` when config data.imagenet_dir is set; else the dataset command's own
    default ($CREDITBENCH_IMAGENET_DIR, else /data/imagenet)."""
    root = config["data"].get("imagenet_dir")
    return f"--imagenet-root {shlex.quote(root)}" if root else ""


def tfds_params():
    """The dataset rule's `tfds` param, present only when config data.loader reads some dataset through
    TFDS: per dataset, `--loader tfds --tfds-dir DIR`, or nothing for a dataset left to torchvision. With
    the default loader the rule's params and command (both rerun triggers) are what they always were, so
    no cached dataset is rebuilt."""
    data = config["data"]
    if not any(loader_of(data, name) == "tfds" for name in DATASET_NAMES + STREAMED_DATASETS):
        return {}
    option = f"--loader tfds --tfds-dir {shlex.quote(data.get('tfds_dir', DEFAULT_TFDS_DIR))}"
    return {"tfds": lambda wildcards: option if loader_of(data, wildcards.dataset) == "tfds" else ""}


def dataset_command():
    """The dataset rule's command; `{params.tfds}` only where that param exists (tfds_params)."""
    tfds = " {params.tfds}" if tfds_params() else ""
    return ("python -m impls.common.datasets prepare {wildcards.dataset} {output.npz}"
            " --fashion-mnist-dir {params.fmnist} --download-dir {params.downloads} {params.download}"
            f" {{params.imagenet}}{tfds} 2> {{log}} || {{{{ cat {{log}} >&2; exit 2; }}}}")


def train_resources(name):
    """Resources of the train jobs: the accelerator they must hold."""
    platform = config["platform"]
    return {"gpu": 1 if platform == "gpu" else 0, "tpu": 1 if platform == "tpu" else 0}


wildcard_constraints:
    paper="[a-z_]+",
    job="[A-Za-z0-9_.-]+",
    figure="(fig|tab)_[a-z0-9_]+",
    dataset="[a-z0-9_]+",
