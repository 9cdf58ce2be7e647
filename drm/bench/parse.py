"""Benchmark of the workflow's parse time (`python -m drm.bench --parse`).

Every Snakemake command (`-n all`, `--lint`, `figures`) first parses the Snakefile, which
checks the whole grid of the config (every cell's config built and checked as the cell would):
this is the wait before anything is printed. Times `snakemake -n all` on the paper config
(config/config.yaml, 240 cells) in a scratch copy of the workflow, so that nothing is written
into the repository. Target: under 5 s (wall). A busy machine (`load_average`) inflates wall
time; `cpu_s` (the dry run's CPU time) much less. `snakemake_start_s` is Snakemake's own start
(`snakemake --version`), which no workflow can shorten.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drm.bench.output import print_figures

REPO = Path(__file__).resolve().parents[2]
# What the dry run reads: the published curves are the aggregate's inputs.
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "environment.yml", "results/published")
TARGET_S = 5.0


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_snakemake(workdir: Path, args: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one `snakemake <args>`."""
    args = [str(Path(sys.executable).parent / "snakemake")] + args
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start, cpu = time.perf_counter(), _children_cpu_s()
    subprocess.run(args, cwd=workdir, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, _children_cpu_s() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drm.bench --parse", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="dry runs timed (the median is reported)")
    parser.add_argument("--configfile", help="another config than config/config.yaml (its path in the repo)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in WORKFLOW_FILES:
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, work / name)
        dry_run = ["-n", "all"] + (["--configfile", args.configfile] if args.configfile else [])
        runs = [time_snakemake(work, dry_run) for _ in range(args.repeat)]
        floor = [time_snakemake(work, ["--version"]) for _ in range(args.repeat)]
    out = dict(command="snakemake " + " ".join(dry_run),
               parse_s=round(statistics.median(w for w, _ in runs), 2),
               cpu_s=round(statistics.median(c for _, c in runs), 2),
               runs_s=[round(w, 2) for w, _ in runs],
               # Snakemake's own start (`snakemake --version`): the part no workflow can save.
               snakemake_start_s=round(statistics.median(w for w, _ in floor), 2),
               target_s=TARGET_S,
               load_average=round(os.getloadavg()[0], 1), cores=os.cpu_count())
    print_figures(out, args.json, width=17)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
