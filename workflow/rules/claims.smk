# The grid's runs as a publishable dataset (drm/analysis/export.py): per-task curves in the published
# DrQ-v2 layout with the dormant ratio beside them, and a provenance table from meta.json. Not
# part of `all`: `snakemake --cores 1 export` once the grid has finished. (The claims themselves
# are evaluated in `aggregate`; the claims file is checked in common.smk.)

from drm.layout import EXPORT_DIR

localrules: export


rule export:
    input:
        evals=grid_outputs("eval.csv"),
        trains=grid_outputs("train.csv"),
        metas=grid_outputs("meta.json"),
    params:
        agents=lookup(dpath="agents", within=config),
        tasks=lookup(dpath="tasks", within=config),
        seeds=lookup(dpath="seeds", within=config),
    output:
        curves=directory(f"{EXPORT_DIR}/curves"),
        provenance=f"{EXPORT_DIR}/provenance.csv",
        readme=f"{EXPORT_DIR}/README.md",
    conda:
        "../../environment.yml"
    log:
        "results/logs/export.log",
    script:
        "../scripts/export.py"
