"""The `aggregate` rule: the library's aggregation over the rule's config, input and output."""
import contextlib
import logging
import sys
from pathlib import Path

from drm.analysis import aggregate
from drm.cell.config import RUNS

# The bootstrap's progress (a line per call) also goes to the terminal: it can take minutes.
progress = logging.StreamHandler(sys.stderr)
progress.setFormatter(logging.Formatter("aggregate: %(message)s"))
logging.getLogger("drm.analysis.stats.progress").addHandler(progress)
with open(snakemake.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    status = aggregate.run_logged(snakemake.config, RUNS,
                                  Path(snakemake.output.tidy).parent, workers=snakemake.threads)
if status:
    sys.exit(f"aggregate failed ({status}); see {snakemake.log[0]}")
