"""Benchmark of the statistics on a paper-size synthetic grid (`python -m drm.bench --aggregate`).

Writes harness-shaped runs (3 agents x 8 tasks x 10 seeds x 150 evaluations, one training
episode per 1,000 frames) into a temporary folder, then times the import, the estimates (with
the default 50,000/2,000 reps unless told otherwise) and re-drawing every figure from the cache.
`redraw_s` draws in this process; `redraw_cli_s` is `python -m drm.plot` as the workflow runs it,
imports included. The `*_cpu_s` numbers are CPU time, which a busy shared machine inflates less
than wall time (`load_average` says how busy it was). Target: re-drawing under 10 s on the
2-core development machine.

`--published` times instead what `snakemake all --configfile config/published.yaml` (or
`figures`) waits for: aggregating the published DrQ-v2 curves (24 tasks, 227 runs) at that config's reps, with
`--workers` processes and an empty bootstrap cache.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from drm import aggregate, figures, results

AGENTS = ("drm", "drqv2", "alix")
TASKS = ("acrobot_swingup", "cartpole_swingup_sparse", "cheetah_run", "hopper_hop",
         "quadruped_run", "reacher_hard", "walker_run", "finger_turn_hard")
EVAL_EVERY = 10_000
EPISODE_FRAMES = 1_000


def write_run(run_dir: Path, rng: np.random.Generator, evals: int, skill: float,
              speed: float) -> None:
    """One finished harness run with a saturating return curve and a decaying dormant ratio."""
    run_dir.mkdir(parents=True, exist_ok=True)
    frames = np.arange(evals) * EVAL_EVERY
    progress = 1 - np.exp(-frames / (speed * frames[-1] + 1))
    reward = np.clip(1000 * skill * progress + rng.normal(0, 30, evals), 0, 1000)
    reward[0] = rng.uniform(0, 30)
    pd.DataFrame(dict(frame=frames, step=frames // 2, episode=frames // EPISODE_FRAMES,
                      episode_reward=reward, total_time=frames / 200.0)
                 ).to_csv(run_dir / "eval.csv", index=False)
    train_frames = np.arange(EPISODE_FRAMES, frames[-1] + 1, EPISODE_FRAMES)
    dormant = np.clip(0.1 + 0.6 * np.exp(-train_frames / (speed * frames[-1] / 2 + 1))
                      + rng.normal(0, 0.03, len(train_frames)), 0, 1)
    dormant[train_frames < 4 * EPISODE_FRAMES] = np.nan  # before learning starts
    pd.DataFrame(dict(frame=train_frames, step=train_frames // 2,
                      episode=train_frames // EPISODE_FRAMES,
                      episode_reward=np.interp(train_frames, frames, reward), fps=100.0,
                      actor_dormant_ratio=dormant)).to_csv(run_dir / "train.csv", index=False)
    (run_dir / "config.yaml").write_text("synthetic: true\n")
    (run_dir / "meta.json").write_text(json.dumps({"frames": int(frames[-1]), "synthetic": True}))


def make_grid(runs_dir: Path, agents=AGENTS, tasks=TASKS, seeds=range(1, 11), evals: int = 150,
              seed: int = 0) -> None:
    """A grid where drm learns faster and higher than drqv2, and alix sits in between."""
    rng = np.random.default_rng(seed)
    for a, agent in enumerate(agents):
        for task in tasks:
            base = rng.uniform(0.5, 0.8)
            for s in seeds:
                skill = np.clip(base + 0.08 * (len(agents) - 1 - a) + rng.normal(0, 0.08), 0.05, 1)
                write_run(runs_dir / agent / task / f"seed{s}", rng, evals, skill,
                          speed=0.25 + 0.1 * a)


def published(args) -> int:
    """The published config's aggregation, timed with a progress line per bootstrap call."""
    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config" / "published.yaml").read_text())
    for entry in config["aggregate"]["published"]:
        entry["path"] = str(repo / entry["path"])
    for key in ("reps", "profile_reps"):  # else the config's own
        if getattr(args, key) is not None:
            config["aggregate"][key] = getattr(args, key)
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger("drm.stats.progress").addHandler(handler)
    logging.getLogger("drm.stats.progress").setLevel(logging.INFO)
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
    logging.getLogger("drm.stats.progress").removeHandler(handler)
    print_figures(out, args.json, width=16)
    return 0


def print_figures(out: dict, as_json: bool, width: int = 16) -> None:
    """A benchmark's figures: one JSON object, or one `name: value` line each."""
    if as_json:
        print(json.dumps(out))
        return
    for key, value in out.items():
        print(f"{key:>{width}}: {value}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drm.bench --aggregate",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, help=f"default {aggregate.DEFAULTS['reps']:,}")
    parser.add_argument("--profile-reps", type=int, help=f"default {aggregate.DEFAULTS['profile_reps']:,}")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", type=Path, help="write the grid, aggregate and figures here")
    parser.add_argument("--published", action="store_true",
                        help="time the published config's aggregation instead")
    parser.add_argument("--workers", type=int, default=1, help="bootstrap processes")
    args = parser.parse_args(argv)
    logging.getLogger("absl").setLevel(logging.WARNING)
    if args.published:
        return published(args)
    args.reps = args.reps or aggregate.DEFAULTS["reps"]
    args.profile_reps = args.profile_reps or aggregate.DEFAULTS["profile_reps"]
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
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "drm.plot", "--aggregate", str(agg), "--out", str(figs)],
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
