# The validation grid's verdicts (config/validate.yaml, docs/validation.md): every evaluation of
# every finished cell set against the published seeds at the same frame. `validate_verdicts`
# imports with the aggregation's importer and caches the table; `validate` draws the figures,
# the report's table and the one-line summaries from that cache alone.

localrules: validate_verdicts, validate

from drm.layout import RECORDED_DIR, VALIDATE_DIR as VALIDATE


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


# The validation runs kept in the repository, drawn without training (drm.analysis.recorded):
# its own config, read here, lists the runs looked for; the outputs are those of the runs found
# when the workflow parses. `make demo` asks for it beside `all`, so its report has the section.
from drm.analysis import recorded  # noqa: E402

localrules: recorded

RECORDED_CONFIG = "config/recorded.yaml"
RECORDED_RUNS = recorded.load_config(RECORDED_CONFIG)
RECORDED_OUT = recorded.outputs(RECORDED_RUNS, RECORDED_DIR)
RECORDED_SECTION = "Recorded validation runs"


rule recorded:
    input:
        config=RECORDED_CONFIG,
        runs=recorded.run_files(RECORDED_RUNS),
    output:
        figures=[report(png, caption=f"../report/{Path(png).stem}.rst", category=RECORDED_SECTION,
                        subcategory="Statistics and figures") for png in RECORDED_OUT["figures"]],
        figures_pdf=RECORDED_OUT["figures_pdf"],
        validation=[report(png, caption="../report/validation.rst", category=RECORDED_SECTION,
                           subcategory="Against the published record") for png in RECORDED_OUT["validation"]],
        mechanisms=[report(png, caption="../report/mechanisms.rst", category=RECORDED_SECTION,
                           subcategory="DrM's mechanisms") for png in RECORDED_OUT["mechanisms"]],
        verdicts=RECORDED_OUT["verdicts"],
        summary=report(RECORDED_OUT["summary"][0], caption="../report/recorded.rst",
                       category=RECORDED_SECTION, subcategory="Summary"),
    conda:
        "../../environment.yml"
    log:
        "results/logs/recorded.log",
    script:
        "../scripts/recorded.py"
