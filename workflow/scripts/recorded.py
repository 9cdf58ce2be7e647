"""The `recorded` rule: the recorded validation runs through the grid's import, statistics and
figures (drm.analysis.recorded), with no training."""
import logging
from pathlib import Path

from drm.analysis import recorded

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(name)s: %(message)s")
logging.getLogger("absl").setLevel(logging.WARNING)  # rliable logs every bootstrap call
lines = recorded.draw(recorded.load_config(snakemake.input.config),
                      Path(snakemake.output.summary).parent)
with open(snakemake.log[0], "a") as log:
    log.write("\n".join(lines) + "\n")
print("\n".join(lines))
