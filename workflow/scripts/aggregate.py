"""The `aggregate` rule: the library's aggregation over the rule's params, input and output."""
import contextlib
import logging
import sys
from pathlib import Path

from drm.analysis import aggregate
from drm.layout import RUNS

# The bootstrap's progress (a line per call) also goes to the terminal: it can take minutes.
progress = logging.StreamHandler(sys.stderr)
progress.setFormatter(logging.Formatter("aggregate: %(message)s"))
logging.getLogger("drm.analysis.stats.progress").addHandler(progress)
# The rule's params and inputs only: what Snakemake knows this job depends on.
config = {"agents": snakemake.params.agents, "tasks": snakemake.params.tasks,
          "seeds": snakemake.params.seeds, "aggregate": snakemake.params.aggregate,
          "claims": snakemake.input.claims or None}
with open(snakemake.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    status = aggregate.run_logged(config, RUNS, Path(snakemake.output.tidy).parent,
                                  workers=snakemake.threads)
if status:
    sys.exit(f"aggregate failed ({status}); see {snakemake.log[0]}")
