"""Synthetic harness-shaped runs, for the tests and the statistics benchmark (drm.bench.stats).

Each run is what a finished cell leaves in its folder (eval.csv, train.csv, config.yaml,
meta.json), with a saturating return curve and a decaying dormant ratio.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from drm import layout

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
                write_run(runs_dir / layout.run_dir(agent, task, s), rng, evals, skill,
                          speed=0.25 + 0.1 * a)
