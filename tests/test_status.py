"""`python -m drm.status` on a results tree made of real files: one cell in each state."""
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch
import yaml

from drm.cell import snapshot
from drm import status

REPO = Path(__file__).resolve().parents[1]
GRID = """
agents: [drm, drqv2]
tasks: [cartpole_balance]
seeds: [1, 2, 3]
train: {device: cpu, threads: 1, overrides: {num_train_frames: 10000, num_seed_frames: 1000}}
resources: {frames_per_hour: 36000}
"""
HOUR = 3600


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def start_cell(root: Path, agent: str, seed: int, frames: list[int], end: float, every_s: float = 100,
               snapshot_frame: int | None = None, error: str | None = None) -> Path:
    """A started cell as drm.train leaves it: config.yaml, train.log, work/, the Snakemake log."""
    run = root / "results" / "runs" / agent / "cartpole_balance" / f"seed{seed}"
    (run / "work").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"num_train_frames": 10000, "seed": seed}))
    first = end - every_s * len(frames)
    lines = [f"{_stamp(first)} start {agent} cartpole_balance seed={seed} device=cpu egl frame=0/10000"]
    lines += [f"{_stamp(first + every_s * (i + 1))} episode {i + 1} frame={f} episode_reward=1.00 "
              f"fps=12.0" for i, f in enumerate(frames)]
    (run / "train.log").write_text("\n".join(lines) + "\n")
    log = root / "results" / "logs" / "train" / agent / "cartpole_balance" / f"seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    text = [line.split(" ", 1)[1] for line in lines]
    if error:
        text += ["Traceback (most recent call last):", '  File "drm/train.py", line 1', error]
    log.write_text("\n".join(text) + "\n")
    if snapshot_frame is not None:
        snapshot.save(run / "work" / "snapshot.pt", {
            "step": snapshot_frame // 2, "last_snapshot_frame": snapshot_frame,
            "agent": {"actor": {"weight": torch.ones(3, 3)}}, "rng": snapshot.rng_states(torch.device("cpu"))})
    for path in (run / "train.log", log, run / "work" / "snapshot.pt"):
        if path.exists():
            os.utime(path, (end, end))
    return run


def tree(root: Path, now: float) -> dict:
    (root / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", root / "config" / "config.yaml")
    (root / "config" / "grid.yaml").write_text(GRID)
    done = root / "results" / "runs" / "drm" / "cartpole_balance" / "seed1"
    done.mkdir(parents=True)
    for name in ("eval.csv", "train.csv", "train.log"):
        (done / name).write_text("frame\n0\n")
    (done / "config.yaml").write_text(yaml.safe_dump({"num_train_frames": 10000}))
    (done / "meta.json").write_text(json.dumps({"frames": 10000}))
    # running: logging every 100 s, last line a minute ago; 20 frames/s since its start
    start_cell(root, "drm", 2, [2000, 4000, 6000], end=now - 60)
    # interrupted: silent for two hours, a snapshot at 4,000 frames
    start_cell(root, "drm", 3, [2000, 4000, 5000], end=now - 2 * HOUR, snapshot_frame=4000)
    # failed: its Snakemake log ends with the error
    start_cell(root, "drqv2", 1, [2000], end=now - HOUR, snapshot_frame=2000,
               error="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    return status.load_config([root / "config" / "config.yaml", root / "config" / "grid.yaml"],
                              REPO / "workflow" / "schemas" / "config.schema.yaml")


def test_every_state_from_files_on_disk(tmp_path):
    now = time.time()
    config = tree(tmp_path, now)
    cells = {(c.agent, c.seed): c for c in status.status(config, tmp_path, now=now, queue={})}
    assert {k: c.state for k, c in cells.items()} == {
        ("drm", 1): "done", ("drm", 2): "running", ("drm", 3): "interrupted",
        ("drqv2", 1): "failed", ("drqv2", 2): "pending", ("drqv2", 3): "pending"}
    running = cells[("drm", 2)]
    assert running.frame == 6000 and running.fps == 20.0  # 4,000 frames in 200 s since its start
    assert running.detail == "frame 6,000/10,000, 20.0 frames/s, ETA 3 min"
    assert cells[("drm", 3)].detail == "snapshot at frame 4,000" and cells[("drm", 3)].frame == 4000
    assert cells[("drqv2", 1)].detail.startswith("torch.OutOfMemoryError: CUDA out of memory")
    assert cells[("drqv2", 2)].total == 10000, "the budget of a cell not started yet, from the config"
    # the same cell once its logs are old enough is interrupted, not running
    later = {(c.agent, c.seed): c.state for c in status.status(config, tmp_path, now=now + HOUR, queue={})}
    assert later[("drm", 2)] == "interrupted"
    # a SLURM job that runs it makes it running whatever its logs' age
    queue = {"rule_train_wildcards_drm_cartpole_balance_3": "RUNNING"}
    assert {(c.agent, c.seed): c.state for c in status.status(config, tmp_path, now=now, queue=queue)}[
        ("drm", 3)] == "running"


@pytest.mark.xdist_group("slurm")  # it reads this machine's SLURM queue: not beside the cluster's tests
def test_the_command_prints_cells_totals_and_remaining_hours(tmp_path):
    tree(tmp_path, time.time())
    done = subprocess.run([sys.executable, "-m", "drm.status", "--root", str(tmp_path), "--configfile",
                           str(tmp_path / "config" / "grid.yaml"), "--jobs", "3"], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "drqv2/cartpole_balance/seed1  failed       torch.OutOfMemoryError" in out
    assert "6 cells: 1 done, 1 running, 1 interrupted, 1 failed, 2 pending" in out
    # left: 4,000 frames at 20/s, 6,000 at 15/s and 8,000 at 12/s (each cell's own speed since its
    # last start), 2 x 10,000 at drqv2's measured 12/s: 2,933 s
    assert ("to train: 5 cells, 38,000 frames, about 0.8 CPU job-hours (3 at their measured speed, the "
            "others at the median measured on their agent and task, else resources.frames_per_hour)") in out
    # the cost block of drm/grid.py (tests/test_grid.py), at --jobs cells at once
    assert "  3 cell(s) at once (--jobs 3): RAM " in out
