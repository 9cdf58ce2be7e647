"""The benchmarks behind `python -m drm.bench`: the cell, the statistics, the workflow's parse.
Import-free."""
