"""DrM reproducibility harness: the DMC pixel environment, replay, training cell, DrM agent,
and the statistics and figures. Kept import-free so `python -m drm.<tool>` starts fast."""
