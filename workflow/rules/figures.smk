# figure: aggregate -> results/<paper>/<figure>.csv (tidy), then plot -> .png (in the report) + .pdf;
# table (a tab_* figure): the same, plus the drawn table as .html, shown in the report beside the PNG


def figure_params(wildcards):
    fig = PLAN.figures[wildcards.figure]
    return {
        "paper": fig.paper, "target": fig.target, "label": fig.label, "title": fig.title,
        "caption": fig.caption, "scale": fig.scale, "dataset": fig.dataset, "note": fig.note,
        "plot": fig.plot, "factors": list(fig.factors), "aggregate": fig.aggregate,
        "runs": {rid: PLAN.runs[rid] for rid in fig.run_ids},
    }


rule figure:
    # one job (one process) per figure: the tidy table, then its plot
    input:
        figure_evaluations,
    output:
        csv=f"{RESULTS}/{{paper}}/{{figure}}.csv",
        png=report(
            f"{RESULTS}/{{paper}}/{{figure}}.png",
            caption="../report/figure.rst",
            category="{paper}",
            labels=lambda wc: report_labels(wc, "image"),
        ),
        pdf=f"{RESULTS}/{{paper}}/{{figure}}.pdf",
    localrule: True
    log:
        "logs/{paper}/figure/{figure}.log",
    params:
        figure=figure_params,
        results=RESULTS,
    script:
        "../scripts/figure.py"


ruleorder: table > figure


use rule figure as table with:
    # a tab_* target: its table as HTML too (same cells as the PNG; the PNG and PDF stay for papers)
    wildcard_constraints:
        figure="tab_[a-z0-9_]+",
    output:
        csv=f"{RESULTS}/{{paper}}/{{figure}}.csv",
        png=report(
            f"{RESULTS}/{{paper}}/{{figure}}.png",
            caption="../report/figure.rst",
            category="{paper}",
            labels=lambda wc: report_labels(wc, "image"),
        ),
        pdf=f"{RESULTS}/{{paper}}/{{figure}}.pdf",
        html=report(
            f"{RESULTS}/{{paper}}/{{figure}}.html",
            caption="../report/figure.rst",
            category="{paper}",
            labels=lambda wc: report_labels(wc, "table"),
        ),


def claim_targets():
    """Figures with a claim at the configured scale: the scorecard needs their tables."""
    scale = config["scale"]
    wanted = {c["figure"] for doc in PLAN.papers.values() for c in doc.get("claims", [])
              if c.get("scale", "paper") == scale}
    return [t for t in PLAN.targets() if t in wanted]


rule scorecard:
    # every claim of every configured paper.yaml: paper value vs ours, with a verdict
    input:
        [f"{RESULTS}/{PLAN.figures[t].paper}/{t}.csv" for t in claim_targets()],
    output:
        csv=report(f"{RESULTS}/scorecard.csv", caption="../report/scorecard.rst", category="scorecard"),
        html=report(f"{RESULTS}/scorecard.html", caption="../report/scorecard.rst", category="scorecard"),
        summary=report(f"{RESULTS}/scorecard_summary.png", caption="../report/scorecard.rst", category="scorecard"),
    localrule: True
    log:
        "logs/scorecard.log",
    params:
        targets=claim_targets(),
        papers=PLAN.papers,
        labels={t: f.label for t, f in PLAN.figures.items()},
        scale=config["scale"],
    script:
        "../scripts/scorecard.py"
