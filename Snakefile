# creditbench: every figure and table of five papers on learning without backpropagation.
# Table of contents only; logic lives in workflow/rules/*.smk and importable Python (impls/).
#   snakemake --cores 2 all                          every figure of config['papers'] at config['scale']
#   snakemake --cores 2 fig_nodepert_lr --config scale=cpu
#   snakemake --report results/report.html
from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/config_syntax.smk"


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/targets.smk"


rule all:
    default_target: True
    localrule: True
    input:
        all_figure_outputs(),
        "results/scorecard.csv",
        "results/scorecard.html",
        "results/scorecard_summary.png",
