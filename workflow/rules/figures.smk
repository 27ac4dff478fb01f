# figure: aggregate -> results/<paper>/<figure>.csv (tidy), its record -> .provenance.json (what trained its
# runs, what made it), then plot -> .png (in the report) + .pdf


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
            labels=lambda wc: {"figure": wc.figure, "paper figure": PLAN.figures[wc.figure].label,
                               "scale": PLAN.figures[wc.figure].scale},
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


rule scorecard:
    # every claim of every configured paper.yaml: paper value vs ours, with a verdict
    input:
        [f"{RESULTS}/{PLAN.figures[t].paper}/{t}.csv" for t in claim_targets()],
    output:
        csv=report(f"{RESULTS}/scorecard.csv", caption="../report/scorecard.rst", category="scorecard"),
        png=report(f"{RESULTS}/scorecard.png", caption="../report/scorecard.rst", category="scorecard"),
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
