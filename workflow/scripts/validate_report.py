"""The `validate` rule: figures and summary from the cached verdicts alone (never re-imports)."""
import pandas as pd

from drm.analysis import validation, validation_plot

tidy = pd.read_csv(snakemake.input.tidy)
bands = pd.read_csv(snakemake.input.bands)
table = pd.read_csv(snakemake.input.verdicts)
for task, png, pdf in zip(snakemake.params.tasks, snakemake.output.png, snakemake.output.pdf):
    validation_plot.draw_task(tidy, bands, table, task, [png, pdf])
lines = validation.summary_lines(table)
with open(snakemake.output.summary, "w") as f:
    f.write("\n".join(lines) + "\n")
validation_plot.write_html_table(table, snakemake.output.html)
with open(snakemake.log[0], "w") as log:
    log.write("\n".join(lines) + "\n")
print("\n".join(lines))
