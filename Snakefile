# DrM vs DrQ-v2 and A-LIX on the DeepMind Control Suite from pixels.
#   snakemake --cores 8 all                                   the grid of config/config.yaml
#   snakemake --cores 2 all --configfile config/demo.yaml     the CPU demo
#   snakemake --cores 1 figures                               re-draw figures from cached results
#   snakemake --cores 2 validate --configfile config/validate.yaml   check against the published record
#   snakemake --report results/report.html                    the report of what `all` made
#   snakemake --cores 1 export                                the grid's runs as a dataset (results/export/)
# The config keys are described in workflow/schemas/config.schema.yaml; the README has the rest.

from snakemake.utils import min_version

min_version("9.0")  # pyproject.toml: snakemake>=9,<10

configfile: "config/config.yaml"

report: "workflow/report/workflow.rst"  # the report opens on this, then the figures


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/claims.smk"
include: "workflow/rules/videos.smk"


rule all:
    input:
        grid_outputs("eval.csv"),  # listed so that a deleted cell is planned again
        rules.plot.output,
        BEHAVIOUR_PAGE,  # the report's videos, when the grid films its cells
    default_target: True
