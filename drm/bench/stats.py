"""Benchmark of the statistics on a paper-size synthetic grid (`python -m drm.bench --aggregate`).

Writes harness-shaped runs (3 agents x 8 tasks x 10 seeds x 150 evaluations, one training
episode per 1,000 frames) into a temporary folder, then times the import, the estimates (with
the default 50,000/2,000 reps unless told otherwise) and re-drawing every figure from the cache.
`redraw_s` draws in this process; `redraw_cli_s` is `python -m drm.analysis.plot` as the workflow runs it,
imports included. The `*_cpu_s` numbers are CPU time, which a busy shared machine inflates less
than wall time (`load_average` says how busy it was). Target: re-drawing under 10 s on the
2-core development machine.

`--published` times instead what `snakemake all --configfile config/published.yaml` (or
`figures`) waits for: aggregating the published DrQ-v2 curves (24 tasks, 227 runs) at that config's reps, with
`--workers` processes and an empty bootstrap cache.
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from drm.analysis import aggregate, figures, results
from drm.analysis.synthetic import AGENTS, TASKS, make_grid
from drm.bench.output import print_figures

def published(args) -> int:
    """The published config's aggregation, timed with a progress line per bootstrap call."""
    repo = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((repo / "config" / "published.yaml").read_text())
    for entry in config["aggregate"]["published"]:
        entry["path"] = str(repo / entry["path"])
    for key in ("reps", "profile_reps"):  # else the config's own
        if getattr(args, key) is not None:
            config["aggregate"][key] = getattr(args, key)
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger("drm.analysis.stats.progress").addHandler(handler)
    logging.getLogger("drm.analysis.stats.progress").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        aggregate.run(config, Path(tmp) / "runs", args.keep or Path(tmp) / "aggregate",
                      workers=args.workers)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = dict(config="config/published.yaml (24 tasks, 227 published runs)",
                   reps=config["aggregate"]["reps"], profile_reps=config["aggregate"]["profile_reps"],
                   workers=args.workers, published_s=round(time.perf_counter() - wall, 1),
                   published_cpu_s=round(time.process_time() - cpu + after.ru_utime + after.ru_stime
                                         - children.ru_utime - children.ru_stime, 1),
                   load_average=round(os.getloadavg()[0], 1), cores=os.cpu_count())
    logging.getLogger("drm.analysis.stats.progress").removeHandler(handler)
    print_figures(out, args.json, width=16)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drm.bench --aggregate",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, help=f"default {aggregate.defaults()['reps']:,}")
    parser.add_argument("--profile-reps", type=int, help=f"default {aggregate.defaults()['profile_reps']:,}")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", type=Path, help="write the grid, aggregate and figures here")
    parser.add_argument("--published", action="store_true",
                        help="time the published config's aggregation instead")
    parser.add_argument("--workers", type=int, default=1, help="bootstrap processes")
    args = parser.parse_args(argv)
    logging.getLogger("absl").setLevel(logging.WARNING)
    if args.published:
        return published(args)
    args.reps = args.reps or aggregate.defaults()["reps"]
    args.profile_reps = args.profile_reps or aggregate.defaults()["profile_reps"]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        runs, agg, figs = root / "runs", root / "aggregate", root / "figures"
        make_grid(runs)
        config = dict(agents=list(AGENTS), tasks=list(TASKS), seeds=list(range(1, 11)),
                      aggregate=dict(reps=args.reps, profile_reps=args.profile_reps, published=[]))
        wall, cpu = [time.perf_counter()], [time.process_time()]

        def lap():
            wall.append(time.perf_counter())
            cpu.append(time.process_time())
        imported = results.load(runs, AGENTS, TASKS, config["seeds"], [], False)
        lap()
        aggregate.run(config, runs, agg)
        lap()
        figures.draw_all(agg, figs)
        lap()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "drm.analysis.plot", "--aggregate", str(agg), "--out", str(figs)],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        lap()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall_s = [round(b - a, 2) for a, b in zip(wall, wall[1:])]
    cpu_s = [round(b - a, 2) for a, b in zip(cpu, cpu[1:])]
    out = dict(grid=f"{len(AGENTS)} agents x {len(TASKS)} tasks x 10 seeds x 150 evaluations",
               tidy_rows=len(imported.tidy), reps=args.reps, profile_reps=args.profile_reps,
               import_s=wall_s[0], aggregate_s=wall_s[1], estimates_s=round(wall_s[1] - wall_s[0], 2),
               redraw_s=wall_s[2], redraw_cli_s=wall_s[3],
               aggregate_cpu_s=cpu_s[1], redraw_cpu_s=cpu_s[2],
               redraw_cli_cpu_s=round(after.ru_utime + after.ru_stime - child.ru_utime - child.ru_stime, 2),
               load_average=round(os.getloadavg()[0], 1), cores=os.cpu_count(),
               figures=len(figures.FIGURES), redraw_target_s=10.0)
    print_figures(out, args.json, width=16)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
