"""The `aggregate` rule: hands the workflow's config to `python -m drm.analysis.aggregate`."""
import contextlib
import logging
import sys
import tempfile

import yaml

from drm.analysis import aggregate

config = {key: snakemake.config.get(key) for key in ("agents", "tasks", "seeds", "aggregate", "claims")}
# The bootstrap's progress (a line per call) also goes to the terminal: it can take minutes.
progress = logging.StreamHandler(sys.stderr)
progress.setFormatter(logging.Formatter("aggregate: %(message)s"))
logging.getLogger("drm.analysis.stats.progress").addHandler(progress)
with tempfile.NamedTemporaryFile("w", suffix=".yaml") as cfg, open(snakemake.log[0], "w") as log:
    yaml.safe_dump(config, cfg)
    cfg.flush()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        status = aggregate.main(["--config", cfg.name, "--runs", "results/runs",
                                 "--out", "results/aggregate", "--workers", str(snakemake.threads)])
if status:
    sys.exit(f"aggregate failed ({status}); see {snakemake.log[0]}")
