"""The `aggregate` rule: hands the workflow's config to `python -m drm.aggregate`."""
import contextlib
import sys
import tempfile

import yaml

from drm import aggregate

config = {key: snakemake.config.get(key) for key in ("agents", "tasks", "seeds", "aggregate", "claims")}
with tempfile.NamedTemporaryFile("w", suffix=".yaml") as cfg, open(snakemake.log[0], "w") as log:
    yaml.safe_dump(config, cfg)
    cfg.flush()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        status = aggregate.main(["--config", cfg.name, "--runs", "results/runs",
                                 "--out", "results/aggregate"])
if status:
    sys.exit(f"aggregate failed ({status}); see {snakemake.log[0]}")
