# Statistics and figures. `aggregate` reads every finished cell of the grid (plus published
# data) and caches the bootstrap results; its inputs and params are all it reads (the claims and
# published files, the grid and the aggregate section), so an edit of any re-plans it and the
# figures, and an edit of anything else (resources, say) re-plans nothing; `plot` draws the figures from that cache for `all`
# and the report; `figures` re-draws them from the cache alone: it has no inputs (no outputs
# either, so it always runs), so it never plans a training job, even after the code changed.
# The claims are evaluated in `aggregate` (claims.csv); `plot` and `figures` print one line per
# claim from that cache and write the report's verdict table (results/figures/claims.csv).

from drm.analysis.figures import FIGURES  # the figure names, as the library draws them

localrules: aggregate, plot, figures

from drm.layout import AGGREGATE_DIR as AGGREGATE, FIGURES_DIR as FIGURE_DIR
# `plot` and `figures` both re-draw from the cache; the verdicts are then printed, one line each.
DRAW_FIGURES = (f"python -m drm.analysis.plot --aggregate {AGGREGATE} --out {FIGURE_DIR} > {{log}} 2>&1 "
        "|| (cat {log} >&2; exit 1); grep '^claim' {log} || true")


rule aggregate:
    input:
        evals=grid_outputs("eval.csv"),
        trains=grid_outputs("train.csv"),
        metas=grid_outputs("meta.json"),
        claims=config["claims"] or [],
        published=published_inputs(config["aggregate"]["published"]),
    params:  # what the script reads of the config: an edit of any of these re-runs it, nothing else does
        agents=lookup(dpath="agents", within=config),
        tasks=lookup(dpath="tasks", within=config),
        seeds=lookup(dpath="seeds", within=config),
        aggregate=lookup(dpath="aggregate", within=config),
    output:
        tidy=f"{AGGREGATE}/tidy.csv",
        scores=f"{AGGREGATE}/scores.csv",
        estimates=report(f"{AGGREGATE}/estimates.csv", caption="../report/estimates.rst",
                         category="Estimates"),
        skipped=f"{AGGREGATE}/skipped.csv",
        claims=f"{AGGREGATE}/claims.csv",
        cache=f"{AGGREGATE}/cache/meta.json",
    threads: 8  # processes for the bootstraps (at most --cores); the numbers do not depend on it
    conda:
        "../../environment.yml"
    message:
        claims.describe(CLAIMS)
    log:
        "results/logs/aggregate.log",
    script:
        "../scripts/aggregate.py"


rule plot:
    input:
        rules.aggregate.output,
    output:
        [report(f"{FIGURE_DIR}/{name}.png", caption=f"../report/{name}.rst", category="Figures")
         for name in FIGURES],
        [f"{FIGURE_DIR}/{name}.pdf" for name in FIGURES],
        report(f"{FIGURE_DIR}/claims.csv", caption="../report/claims.rst", category="Claims"),
    conda:
        "../../environment.yml"
    log:
        "results/logs/plot.log",
    shell:
        DRAW_FIGURES


rule figures:
    input:
        # A config without training cells (config/published.yaml) may aggregate first; with cells
        # the cache must exist, since aggregating could plan training.
        [] if grid.cells(config) else rules.aggregate.output,
    conda:
        "../../environment.yml"
    log:
        "results/logs/figures.log",
    shell:
        DRAW_FIGURES
