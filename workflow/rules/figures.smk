# aggregate -> results/<paper>/<figure>.csv (tidy), plot -> .png (in the report) + .pdf


def figure_params(wildcards):
    fig = PLAN.figures[wildcards.figure]
    return {
        "paper": fig.paper, "target": fig.target, "label": fig.label, "title": fig.title,
        "caption": fig.caption, "scale": fig.scale, "dataset": fig.dataset, "note": fig.note,
        "plot": fig.plot, "factors": list(fig.factors), "aggregate": fig.aggregate,
        "runs": {rid: PLAN.runs[rid] for rid in fig.run_ids},
    }


rule aggregate:
    input:
        figure_evaluations,
    output:
        f"{RESULTS}/{{paper}}/{{figure}}.csv",
    localrule: True
    log:
        "logs/{paper}/aggregate/{figure}.log",
    params:
        figure=figure_params,
        results=RESULTS,
    script:
        "../scripts/aggregate.py"


rule plot:
    input:
        f"{RESULTS}/{{paper}}/{{figure}}.csv",
    output:
        png=report(
            f"{RESULTS}/{{paper}}/{{figure}}.png",
            caption="../report/figure.rst",
            category="{paper}",
            labels=lambda wc: {"figure": wc.figure, "paper figure": PLAN.figures[wc.figure].label,
                               "scale": PLAN.figures[wc.figure].scale},
        ),
        pdf=f"{RESULTS}/{{paper}}/{{figure}}.pdf",
    localrule: True
    log:
        "logs/{paper}/plot/{figure}.log",
    params:
        figure=figure_params,
    script:
        "../scripts/plot.py"
