"""`python -m drm.analysis.export`: the grid's runs as a publishable dataset (the workflow's `export`).

Writes, from the finished runs (read by the one importer, drm.analysis.results.load, so only runs the
statistics would accept are published):

    OUT/curves/dmc_<task>.csv   one file per task in the layout of the published DrQ-v2 curves
                                (an unnamed index, agent, task, seed, frame, episode_reward, hour)
                                with the actor dormant ratio beside them (dormant_ratio)
    OUT/provenance.csv          one row per run from its meta.json: commit, packages, GPU, seed,
                                config hash (sha256 of the run's config.yaml)
    OUT/README.md               what the files hold and how to aggregate them as a published source

The harness reads OUT/curves back as a published source ({name: ..., path: OUT/curves,
format: drqv2} in aggregate.published), so another group's runs are compared without re-training.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from drm import grid
from drm.analysis import results
from drm.layout import EXPORT_DIR, RUNS, run_dir as run_dir_of

CURVE_COLUMNS = ["agent", "task", "seed", "frame", "episode_reward", "hour", "dormant_ratio"]
PROVENANCE_COLUMNS = ["agent", "task", "seed", "frames", "final_eval_return", "commit", "dirty",
                      "packages", "device", "gpu", "hostname", "started_at", "finished_at",
                      "wall_seconds", "config_sha256"]
README = """# {name}: per-seed DMC learning curves from the DrM reproducibility harness

- `curves/dmc_<task>.csv`: one file per task, the layout of the published DrQ-v2 curves (an
  unnamed index, then `agent, task, seed, frame, episode_reward, hour`) plus `dormant_ratio`.
  `frame` counts environment frames (action repeat included); `episode_reward` is the mean return
  of that evaluation's episodes; `hour` is the run's wall-clock hours at that evaluation;
  `dormant_ratio` is the actor's mean dormant ratio over the training episodes since the previous
  evaluation (empty before learning starts).
- `provenance.csv`: one row per run from its `meta.json`: git commit (and whether the tree was
  dirty), package versions, device and GPU, host, times, and the sha256 of its `config.yaml`.

{runs} runs: agents {agents}; tasks {tasks}; seeds {seeds}.

To aggregate these runs beside your own with the harness, add to the config:

    aggregate:
      published:
        - {{name: {name}, path: <this folder>/curves, format: drqv2}}
"""


def _config_hash(run_dir: Path) -> str | None:
    path = run_dir / "config.yaml"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def provenance_row(run_dir: Path, agent: str, task: str, seed: int) -> dict:
    """A run's meta.json flattened into one row of provenance.csv."""
    meta = json.loads((run_dir / "meta.json").read_text())
    git, machine = meta.get("git") or {}, meta.get("machine") or {}
    packages = meta.get("packages") or {}
    return dict(agent=agent, task=task, seed=seed, frames=meta.get("frames"),
                final_eval_return=meta.get("final_eval_return"), commit=git.get("commit"),
                dirty=git.get("dirty"),
                packages=" ".join(f"{k}=={v}" for k, v in sorted(packages.items()) if v),
                device=machine.get("device"), gpu=machine.get("gpu"), hostname=machine.get("hostname"),
                started_at=meta.get("started_at"), finished_at=meta.get("finished_at"),
                wall_seconds=meta.get("wall_seconds"), config_sha256=_config_hash(run_dir))


def _hours(run_dir: Path, frames: np.ndarray) -> np.ndarray:
    """Wall-clock hours at each evaluation (eval.csv's total_time, seconds); NaN where absent."""
    ev = pd.read_csv(run_dir / "eval.csv")
    if "total_time" not in ev.columns:
        return np.full(len(frames), np.nan)
    by_frame = dict(zip(ev["frame"].astype(np.int64), ev["total_time"].astype(float) / 3600.0))
    return np.array([by_frame.get(int(f), np.nan) for f in frames])


def export(runs_dir, agents, tasks, seeds, out_dir, name: str = "harness_runs") -> pd.DataFrame:
    """Writes OUT (see the module's docstring); returns the exported tidy table."""
    runs_dir, out = Path(runs_dir), Path(out_dir)
    tidy = results.load(runs_dir, agents, tasks, seeds, [], skip_bad=False).tidy
    if tidy.empty:
        raise ValueError(f"no finished runs of the grid under {runs_dir} to export")
    curves = out / "curves"
    curves.mkdir(parents=True, exist_ok=True)
    for stale in curves.glob("dmc_*.csv"):
        stale.unlink()
    parts, prov = [], []
    for (agent, task, seed), rows in tidy.groupby(["agent", "task", "seed"], sort=True):
        run_dir = runs_dir / run_dir_of(agent, task, seed)
        parts.append(rows.assign(hour=_hours(run_dir, rows["frame"].to_numpy())))
        prov.append(provenance_row(run_dir, agent, task, int(seed)))
    table = pd.concat(parts, ignore_index=True)[CURVE_COLUMNS]
    for task, rows in table.groupby("task", sort=True):
        rows.reset_index(drop=True).to_csv(curves / f"dmc_{task}.csv")  # the unnamed index column
    pd.DataFrame(prov, columns=PROVENANCE_COLUMNS).to_csv(out / "provenance.csv", index=False)
    (out / "README.md").write_text(README.format(
        name=name, runs=len(prov), agents=", ".join(sorted(table["agent"].unique())),
        tasks=", ".join(sorted(table["task"].unique())),
        seeds=", ".join(map(str, sorted(table["seed"].unique())))))
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drm.analysis.export", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="workflow config YAML (reads agents, tasks, seeds)")
    parser.add_argument("--runs", default=RUNS, help="the harness's runs folder")
    parser.add_argument("--out", default=EXPORT_DIR, help="output folder")
    parser.add_argument("--name", default="harness_runs", help="the source name the README suggests")
    args = parser.parse_args(argv)
    try:
        config = grid.load_config([args.config])
        table = export(args.runs, config["agents"], config["tasks"], config["seeds"], args.out, args.name)
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"export: wrote {table['task'].nunique()} task file(s) of "
          f"{len(table.groupby(['agent', 'task', 'seed']))} runs to {args.out}/curves, "
          f"provenance.csv and README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
