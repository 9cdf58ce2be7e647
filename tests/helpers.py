"""Running real training cells from tests: tiny budgets, subprocesses, SIGKILL."""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Two 500-frame episodes of seed frames, then updates at batch 16; a snapshot after every episode.
TINY = dict(num_train_frames=2000, num_seed_frames=1000, eval_every_frames=1000,
            num_eval_episodes=1, batch_size=16, episode_frames=500, snapshot_every_frames=500,
            replay_buffer_size=10000)
# DrM's tiny cell: updates from agent step 400 (frame 800), every 2 steps, to step 998; with a
# perturbation every 200 steps they perturb at steps 400 (beta = 1 then, alpha = 0.2), 600 and
# 800, so the train.csv rows at frames 1000 and 1500 have seen 1 and 2 perturbations.
TINY_DRM = {"num_seed_frames": 800, "agent.dormant_perturb_interval": 200, "agent.num_expl_steps": 400}
WALL_CLOCK_COLUMNS = ("total_time", "fps")


def cell_command(out_dir, agent, task="cartpole_balance", seed=1, **overrides) -> list[str]:
    args = {**TINY, **overrides}
    return [sys.executable, "-m", "drm.train", f"agent={agent}", f"task={task}", f"seed={seed}",
            f"out_dir={out_dir}", *(f"{k}={v}" for k, v in args.items())]


def run_cell(out_dir, agent, task="cartpole_balance", seed=1, timeout=900, **overrides):
    """Run one cell to its end; raises with its output when it fails."""
    done = subprocess.run(cell_command(out_dir, agent, task, seed, **overrides), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"cell failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def kill_and_resume(out_dir, agent, task="cartpole_balance", seed=1, kill_when=None,
                    timeout=900, **overrides):
    """Start a cell, SIGKILL it once `kill_when(out_dir)` holds (default: after its second
    snapshot, in the middle of the next episode), then run the same command to the end."""
    out_dir = Path(out_dir)
    kill_when = kill_when or (lambda d: _rows(d / "work" / "train.csv") >= 2
                              and (d / "work" / "snapshot.pt").exists())
    proc = subprocess.Popen(cell_command(out_dir, agent, task, seed, **overrides), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while not kill_when(out_dir):
            if proc.poll() is not None:
                raise AssertionError(f"the cell ended ({proc.returncode}) before it could be killed")
            if time.time() > deadline:
                raise AssertionError("the cell never reached the point where it should be killed")
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (out_dir / "meta.json").exists(), "the killed run had already finished"
    return run_cell(out_dir, agent, task, seed, timeout=timeout, **overrides)


def after_snapshot_of_episode(n: int):
    """A `kill_when` that fires once the snapshot following episode n's train row is on disk,
    so the resumed run restores a trained agent and trains on from there."""
    def ready(out: Path) -> bool:
        csv, snap = out / "work" / "train.csv", out / "work" / "snapshot.pt"
        try:
            rows = len(csv.read_text().splitlines()) - 1
            return rows >= n and snap.stat().st_mtime_ns >= csv.stat().st_mtime_ns
        except FileNotFoundError:
            return False
    return ready


def _rows(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path) as f:
        return max(sum(1 for _ in f) - 1, 0)


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_wall_clock(rows: list[dict]) -> list[dict]:
    """Rows as written, minus the wall-clock columns (the only ones that may differ)."""
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK_COLUMNS} for row in rows]
