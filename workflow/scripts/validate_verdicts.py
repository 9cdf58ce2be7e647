"""The `validate_verdicts` rule: the grid's runs (the one importer) judged against the reference."""
import logging
import sys

from drm.analysis import results, validation
from drm.layout import RUNS

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(name)s: %(message)s")
reference = validation.parse_reference(snakemake.params.reference)
published = [s for s in snakemake.params.published if s["name"] == reference[0]]
if not published:
    sys.exit(f"validate.reference {snakemake.params.reference!r}: no source {reference[0]!r} in "
             f"aggregate.published ({', '.join(s['name'] for s in snakemake.params.published)})")
imported = results.load(RUNS, snakemake.params.agents, snakemake.params.tasks,
                        snakemake.params.seeds, published, skip_bad=False)
table = validation.verdicts(imported.tidy, reference)
imported.tidy.to_csv(snakemake.output.tidy, index=False)
validation.reference_bands(imported.tidy, reference).to_csv(snakemake.output.bands, index=False)
table.to_csv(snakemake.output.verdicts, index=False)
