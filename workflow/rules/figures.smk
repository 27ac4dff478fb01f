# figure: aggregate -> results/<paper>/<figure>.csv (tidy), its record -> .provenance.json (what trained its
# runs, what made it), then plot -> .png (in the report) + .pdf;
# table (a tab_* figure): the same, plus the drawn table as .html, shown in the report beside the PNG


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
        # which commits and packages trained its runs and made the table and plot
        record=f"{RESULTS}/{{paper}}/{{figure}}.provenance.json",
    localrule: True
    log:
        "logs/{paper}/figure/{figure}.log",
    params:
        figure=figure_params,
        # label, title, caption and note escaped for the report's reStructuredText (impls.common.rst)
        rst=lambda wildcards: figure_caption_fields(PLAN.figures[wildcards.figure]),
        results=results_dir,
    conda:
        "../../envs/report.yaml"
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
        record=f"{RESULTS}/{{paper}}/{{figure}}.provenance.json",


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
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/scorecard.py"
