# Statistics and figures. `aggregate` reads every finished cell of the grid (plus published
# data) and caches the bootstrap results; `plot` draws the figures from that cache for `all`
# and the report; `figures` re-draws them from the cache alone: it has no inputs (no outputs
# either, so it always runs), so it never plans a training job, even after the code changed.
# The claims are evaluated in `aggregate` (claims.csv); `plot` and `figures` print one line per
# claim from that cache and write the report's verdict table (results/figures/claims.csv).

localrules: aggregate, plot, figures

FIGURE_NAMES = ["aggregate_estimates", "sample_efficiency", "performance_profile",
                "probability_of_improvement", "task_curves_mean_std", "task_curves_iqm",
                "dormant_ratio", "harness_vs_published"]


rule aggregate:
    input:
        evals=grid_outputs("eval.csv"),
        trains=grid_outputs("train.csv"),
        metas=grid_outputs("meta.json"),
        claims=config["claims"] or [],
    output:
        tidy="results/aggregate/tidy.csv",
        scores="results/aggregate/scores.csv",
        estimates=report("results/aggregate/estimates.csv", caption="../report/estimates.rst",
                         category="Estimates"),
        skipped="results/aggregate/skipped.csv",
        claims="results/aggregate/claims.csv",
        cache="results/aggregate/cache/meta.json",
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
        [report(f"results/figures/{name}.png", caption=f"../report/{name}.rst", category="Figures")
         for name in FIGURE_NAMES],
        [f"results/figures/{name}.pdf" for name in FIGURE_NAMES],
        report("results/figures/claims.csv", caption="../report/claims.rst", category="Claims"),
    conda:
        "../../environment.yml"
    log:
        "results/logs/plot.log",
    shell:
        "python -m drm.analysis.plot --aggregate results/aggregate --out results/figures > {log} 2>&1; "
        "grep '^claim' {log} || true"  # the verdicts, one line each


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
        "python -m drm.analysis.plot --aggregate results/aggregate --out results/figures > {log} 2>&1 "
        "|| (cat {log} >&2; exit 1); grep '^claim' {log} || true"  # the verdicts, one line each
