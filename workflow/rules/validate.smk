# The validation grid's verdicts (config/validate.yaml, docs/validation.md): every evaluation of
# every finished cell set against the published seeds at the same frame. `validate_verdicts`
# imports with the aggregation's importer and caches the table; `validate` draws the figures,
# the report's table and the one-line summaries from that cache alone.

localrules: validate_verdicts, validate

VALIDATE = "results/validate"


rule validate_verdicts:
    input:
        evals=grid_outputs("eval.csv"),
        trains=grid_outputs("train.csv"),
        metas=grid_outputs("meta.json"),
        published=published_inputs(config["aggregate"]["published"]),
    output:
        tidy=f"{VALIDATE}/tidy.csv",
        bands=f"{VALIDATE}/bands.csv",
        verdicts=f"{VALIDATE}/verdict.csv",
    params:
        reference=lookup(dpath="validate/reference", within=config),
        published=lookup(dpath="aggregate/published", within=config),
        agents=lookup(dpath="agents", within=config),
        tasks=lookup(dpath="tasks", within=config),
        seeds=lookup(dpath="seeds", within=config),
    conda:
        "../../environment.yml"
    log:
        "results/logs/validate_verdicts.log",
    script:
        "../scripts/validate_verdicts.py"


rule validate:
    input:
        **rules.validate_verdicts.output,
    output:
        png=[report(f"{VALIDATE}/{task}.png", caption="../report/validation.rst",
                    category="Validation against the published record") for task in config["tasks"]],
        pdf=[f"{VALIDATE}/{task}.pdf" for task in config["tasks"]],
        html=report(f"{VALIDATE}/verdict.html", caption="../report/validation_table.rst",
                    category="Validation against the published record"),
        summary=f"{VALIDATE}/summary.txt",
    params:
        tasks=lookup(dpath="tasks", within=config),
    conda:
        "../../environment.yml"
    log:
        "results/logs/validate.log",
    script:
        "../scripts/validate_report.py"
