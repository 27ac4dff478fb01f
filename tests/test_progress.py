"""impls.common.progress: Snakemake's output -> per-figure progress lines for `make run`."""
from datetime import datetime

from impls.common.progress import ProgressFilter

# Snakemake 9's output for one dataset job, one train job serving two figures and one plot job
TRANSCRIPT = """\
Building DAG of jobs...
Job stats:
job                count
---------------  -------
train                  1
total                  3

[Thu Dec  3 09:41:33 2026]
localrule dataset:
    output: resources/datasets/digits.npz, resources/datasets/digits.json
    log: logs/dataset/digits.log
    jobid: 3
    reason: Missing output files: resources/datasets/digits.npz
    wildcards: dataset=digits
    resources: tmpdir=/tmp
wrote resources/datasets/digits.npz: digits from scikit-learn load_digits
[Thu Dec  3 09:41:40 2026]
Finished jobid: 3 (Rule: dataset)
1 of 3 steps (33%) done
Select jobs to execute...

[Thu Dec  3 09:41:41 2026]
localrule train:
    input: results/nodepert/batches/np-5ec8131606/batch.json, resources/datasets/digits.npz
    output: results/nodepert/jobs/nodepert-2x-aa.json
    log: logs/nodepert/train/nodepert-2x-aa.log
    jobid: 2
    reason: Missing output files: results/nodepert/jobs/nodepert-2x-aa.json
    wildcards: paper=nodepert, job=nodepert-2x-aa
    resources: tmpdir=/tmp, gpu=0, tpu=0

[Thu Dec  3 09:44:10 2026]
Finished jobid: 2 (Rule: train)
2 of 3 steps (67%) done

[Thu Dec  3 09:44:11 2026]
localrule figure:
    input: results/nodepert/jobs/nodepert-2x-aa.json
    output: results/nodepert/fig_nodepert_lr.csv, results/nodepert/fig_nodepert_lr.png
    jobid: 1
    wildcards: paper=nodepert, figure=fig_nodepert_lr
[Thu Dec  3 09:44:20 2026]
Finished jobid: 1 (Rule: figure)
3 of 3 steps (100%) done
"""


def _filter(done=()):
    jobs = {"fig_nodepert_lr": ["nodepert-2x-aa", "nodepert-1x-bb"], "fig_nodepert_depth": ["nodepert-2x-aa"],
            "fig_bpfree_train_error": ["bpfree-1x-cc"]}
    papers = {t: t.split("_")[1] for t in jobs}
    return ProgressFilter(jobs, papers, done, clock=lambda: datetime(2026, 12, 3, 9, 44, 0))


def _lines(progress, text):
    out = [shown for line in text.splitlines() for shown in progress.feed(line)]
    return out + progress.close()


def test_each_job_names_its_figures_and_each_figure_counts_its_jobs():
    assert _lines(_filter(done=["nodepert-1x-bb"]), TRANSCRIPT) == [
        "09:44:00 preparing dataset digits",
        "09:44:00 [1 of 3 steps] training nodepert-2x-aa for fig_nodepert_lr, fig_nodepert_depth",
        # fig_nodepert_lr: its other train job was trained before the run; its plot job is still to come
        "09:44:00 [2 of 3 steps] fig_nodepert_lr: 2 of 3 jobs done",
        "09:44:00 [2 of 3 steps] fig_nodepert_depth: 1 of 2 jobs done",
        "09:44:00 [2 of 3 steps] fig_nodepert_lr: plotting",
        "09:44:00 [3 of 3 steps] fig_nodepert_lr: built (results/nodepert/fig_nodepert_lr.png)",
    ]


def test_a_train_job_started_again_no_longer_counts_as_done():
    progress = _filter(done=["nodepert-2x-aa"])
    assert progress.jobs_done("fig_nodepert_depth") == 1
    _lines(progress, TRANSCRIPT.split("[Thu Dec  3 09:44:10 2026]")[0])   # up to the train job's start
    assert progress.jobs_done("fig_nodepert_depth") == 0


def test_errors_and_nothing_to_be_done_pass_through_and_the_rest_is_dropped():
    text = ("Building DAG of jobs...\nNothing to be done (all requested files are present and up to date).\n"
            "Error in rule train:\n    jobid: 2\nExiting because a job execution failed. Look below for error messages\n")
    assert _lines(_filter(), text) == ["Nothing to be done (all requested files are present and up to date).",
                                       "Error in rule train:",
                                       "Exiting because a job execution failed. Look below for error messages"]


def test_a_job_block_at_the_end_of_the_stream_is_reported():
    text = "localrule train:\n    jobid: 9\n    wildcards: paper=bpfree, job=bpfree-1x-cc"
    assert _lines(_filter(), text) == ["09:44:00 training bpfree-1x-cc for fig_bpfree_train_error"]


def test_the_filter_built_from_the_plan_knows_every_figure(tmp_path):
    from pathlib import Path

    from impls.common.progress import from_plan

    root = Path(__file__).resolve().parents[1]
    progress = from_plan(root / "config" / "config.yaml", root, results=str(tmp_path))
    assert "fig_nodepert_lr" in progress.figure_jobs and progress.figure_jobs["fig_nodepert_lr"]
    assert not progress.done                          # an empty results directory: nothing trained
    assert progress.jobs_total("fig_nodepert_lr") == len(progress.figure_jobs["fig_nodepert_lr"]) + 1


def test_a_config_the_plan_cannot_read_still_passes_errors_through(tmp_path, monkeypatch, capsys):
    """A broken config must not break the pipe into which Snakemake writes: one note, then the errors."""
    import io

    from impls.common import progress

    bad = tmp_path / "config.yaml"
    bad.write_text("scale: [unclosed\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("Error in rule train:\n"))
    progress.main(["--config", str(bad), "--root", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("(progress per figure unavailable: ") and out[1:] == ["Error in rule train:"]
