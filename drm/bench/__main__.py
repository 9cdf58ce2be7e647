"""`python -m drm.bench`: what one training cell costs (drm.bench.cell); `--aggregate` the
statistics on a paper-size synthetic grid (drm.bench.stats); `--parse` the wait before any
Snakemake command prints (drm.bench.parse); `--gpu` cells sharing one GPU (drm.bench.gpu);
`--levers` each candidate speed-up of the update against the default (drm.bench.levers);
`--against-official DIR` the official DrQ-v2 code's end-to-end frames/s beside ours
(drm.bench.against_official); `--official-run DIR` the official A-LIX code's own training run,
judged against the published band (drm.bench.official_run); `--watch` what evaluation videos and TensorBoard cost (drm.bench.watch)."""
import importlib
import sys

from drm.cell.allocator import restart_with_allocator_env

MODES = {"--parse": "drm.bench.parse", "--aggregate": "drm.bench.stats", "--gpu": "drm.bench.gpu",
         "--levers": "drm.bench.levers", "--against-official": "drm.bench.against_official",
         "--official-run": "drm.bench.official_run",
         "--watch": "drm.bench.watch"}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    for mode, module in MODES.items():  # their own options (e.g. --reps) are theirs, not the cell's
        if mode in argv:
            return importlib.import_module(module).main([a for a in argv if a != mode])
    return importlib.import_module("drm.bench.cell").main(argv)


if __name__ == "__main__":
    restart_with_allocator_env("drm.bench")
    sys.exit(main())
