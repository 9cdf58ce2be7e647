"""DrM reproducibility harness. `train` (the cell's CLI), `agent` (DrM), `dormant` (the dormant
ratio), `status` (where the grid stands), `cfg/` (the cell's config files); `cell/` the training
cell's parts, `analysis/` from runs to statistics and figures, `bench/` the benchmarks
(docs/architecture.md). Kept import-free so `python -m drm.<tool>` starts fast."""
