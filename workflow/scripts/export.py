"""The `export` rule: the grid's finished runs into results/export/ (drm/analysis/export.py)."""
import contextlib
from pathlib import Path

from drm.analysis import export
from drm.layout import RUNS

with open(snakemake.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    table = export.export(RUNS, snakemake.params.agents, snakemake.params.tasks,
                          snakemake.params.seeds, Path(snakemake.output.provenance).parent)
    print(f"export: {len(table)} evaluations written to {snakemake.output.curves}")
