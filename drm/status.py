"""`python -m drm.status [--configfile FILE ...]`: where the grid stands, from files on disk.

Never trains and never runs Snakemake: it reads the config, each cell's folder
(results/runs/{agent}/{task}/seed{seed}/), its train.log and snapshot, its Snakemake log
(results/logs/train/{agent}/{task}/seed{seed}.log) and, where `squeue` exists, the SLURM queue
(under a timeout). Each cell is, in this order:

- done: meta.json is in the cell's folder (the run published its outputs);
- running: its SLURM job is RUNNING (matched by the job comment Snakemake's SLURM plugin sets,
  rule_train_wildcards_{agent}_{task}_{seed}), or its train.log or Snakemake log was written less
  than a staleness window ago: the longer of --stale-minutes and 3 x the longest gap between
  the last few lines of its train.log (a slow cell logs rarely);
- failed: its Snakemake log has an error line after the run's last start; that line is shown;
- interrupted: a started run that is none of the above; it resumes from its snapshot's frame
  (work/snapshot.pt; frame 0 when there is none yet);
- pending: nothing on disk (queued: its SLURM job is waiting).

Then what is left costs, as the workflow states it before it starts (grid.Cost): cells and frames,
device-hours, RAM and disk per running cell and at --jobs cells at once. The hours are each
unfinished cell's frames left at its own measured speed (frames per second of wall time since its
last start, from its train.log), else the median speed measured on the same (agent, task), the
same task, then any cell, else resources.frames_per_hour.
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from drm import grid
from drm.layout import RUNS, run_dir, train_log
from drm.grid import load_config  # the one loader of a workflow config

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (.*)$")
EPISODE = re.compile(r"\bepisode \d+ frame=(\d+) .*fps=([\d.]+)")
START = re.compile(r"^start .* frame=(\d+)/(\d+)")
ERROR = re.compile(r"error|exception|traceback|killed|oom|out of memory", re.IGNORECASE)
STALE_MINUTES = 10.0
SQUEUE_TIMEOUT_S = 10
STATES = ("done", "running", "interrupted", "failed", "queued", "pending")


@dataclass
class CellStatus:
    agent: str
    task: str
    seed: int
    state: str = "pending"
    frame: int = 0  # the last frame logged (running), the snapshot's (interrupted, failed)
    total: int | None = None  # the cell's frame budget
    fps: float | None = None  # frames per second of wall time since the last start
    detail: str = ""

    @property
    def remaining(self) -> int:
        return 0 if self.state == "done" or self.total is None else max(self.total - self.frame, 0)


def read_log(path: Path) -> list[tuple[float, str]]:
    """train.log as (unix time, text) lines."""
    out = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            m = LINE.match(line)
            if m:
                stamp = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
                out.append((stamp.timestamp(), m.group(2)))
    return out


class _Stub:
    """Stands for any torch object while unpickling a snapshot without torch."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Stub()

    def __setstate__(self, state):
        pass


class _SnapshotUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] == "torch":
            return _Stub
        return super().find_class(module, name)

    def persistent_load(self, pid):  # tensor storages: not read
        return None


def snapshot_frame(path: Path) -> int | None:
    """The frame a snapshot resumes from, read from its pickle without loading torch."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            with archive.open(name) as data:
                state = _SnapshotUnpickler(data).load()
        return int(state["last_snapshot_frame"])
    except (OSError, KeyError, StopIteration, zipfile.BadZipFile, pickle.UnpicklingError, TypeError,
            ValueError, EOFError, AttributeError, ImportError):
        return None


def squeue_states() -> dict[str, str]:
    """SLURM job comment -> state for this user's jobs; {} without squeue or when it fails."""
    if shutil.which("squeue") is None:
        return {}
    try:
        done = subprocess.run(["squeue", "--me", "-h", "-o", "%k|%T"], capture_output=True, text=True,
                              timeout=SQUEUE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if done.returncode != 0:
        return {}
    return dict(line.rsplit("|", 1) for line in done.stdout.splitlines() if "|" in line)


def _last_error(log: Path, since_start: bool = True) -> str | None:
    """The last error line of a Snakemake train log after the run's last start line."""
    if not log.exists():
        return None
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    if since_start:
        starts = [i for i, ln in enumerate(lines) if START.match(ln)]
        lines = lines[starts[-1] + 1:] if starts else lines
    errors = [ln for ln in lines if ERROR.search(ln) and not EPISODE.search(ln)]
    return errors[-1] if errors else None


def inspect(cell: CellStatus, run: Path, snakemake_log: Path, queue: dict, now: float,
            stale_minutes: float) -> CellStatus:
    """Sets the cell's state from its files (the module docstring gives the rules)."""
    if (run / "meta.json").exists():
        cell.state, cell.frame = "done", cell.total or 0
        return cell
    logs = [p for p in (run / "train.log", run / "work" / "train.log") if p.exists()]
    lines = sorted(line for p in logs for line in read_log(p))
    started = [i for i, (_, text) in enumerate(lines) if START.match(text)]
    if started:
        cell.total = int(START.match(lines[started[-1]][1]).group(2))
    session = lines[started[-1]:] if started else lines
    episodes = [(t, int(m.group(1)), float(m.group(2))) for t, text in session
                if (m := EPISODE.search(text))]
    if len(episodes) >= 2 and episodes[-1][0] > episodes[0][0]:
        cell.fps = (episodes[-1][1] - episodes[0][1]) / (episodes[-1][0] - episodes[0][0])
    elif episodes:
        cell.fps = episodes[-1][2]
    job = queue.get(f"rule_train_wildcards_{cell.agent}_{cell.task}_{cell.seed}")
    written = max([p.stat().st_mtime for p in logs + [snakemake_log] if p.exists()], default=None)
    gaps = [b[0] - a[0] for a, b in zip(lines[-6:], lines[-5:])]
    window = max(stale_minutes * 60, 3 * max(gaps, default=0))
    if job == "RUNNING" or (written is not None and now - written < window and job is None
                            and (logs or snakemake_log.exists()) and not _last_error(snakemake_log)):
        cell.state = "running"
        cell.frame = episodes[-1][1] if episodes else (int(START.match(lines[started[-1]][1]).group(1))
                                                       if started else 0)
        eta = (f", ETA {_hours((cell.total - cell.frame) / cell.fps)}"
               if cell.fps and cell.total else "")
        cell.detail = (f"frame {cell.frame:,}/{cell.total or 0:,}, "
                       f"{cell.fps:.1f} frames/s" if cell.fps else f"frame {cell.frame:,}") + eta
        return cell
    snapshot = run / "work" / "snapshot.pt"
    if not (logs or (run / "work").exists() or snakemake_log.exists()):
        cell.state = "queued" if job else "pending"
        cell.detail = f"SLURM job {job.lower()}" if job else ""
        return cell
    cell.frame = (snapshot_frame(snapshot) or 0) if snapshot.exists() else 0
    error = _last_error(snakemake_log)
    if error:
        cell.state, cell.detail = "failed", error[:200]
    else:
        cell.state = "queued" if job else "interrupted"
        cell.detail = (f"snapshot at frame {cell.frame:,}" if snapshot.exists()
                       else "no snapshot yet: restarts from frame 0")
    return cell


def _hours(seconds: float) -> str:
    h = seconds / 3600
    if h < 1:
        return f"{seconds / 60:.0f} min"
    return f"{h:.1f} h" if h < 48 else f"{h / 24:.1f} days"


def _speeds(cells: list[CellStatus], frames_per_hour: float) -> dict:
    """Frames per second to plan each unfinished cell with (the docstring gives the order)."""
    measured = [c for c in cells if c.fps]

    def median(keep):
        values = [c.fps for c in measured if keep(c)]
        return statistics.median(values) if values else None

    out = {}
    for c in cells:
        out[(c.agent, c.task, c.seed)] = (
            c.fps or median(lambda m: (m.agent, m.task) == (c.agent, c.task))
            or median(lambda m: m.task == c.task) or median(lambda m: True) or frames_per_hour / 3600)
    return out


def status(config: dict, root: Path = Path("."), now: float | None = None,
           stale_minutes: float = STALE_MINUTES, queue: dict | None = None) -> list[CellStatus]:
    now = time.time() if now is None else now
    queue = squeue_states() if queue is None else queue
    cells = []
    budgets = None
    for agent, task, seed in grid.cells(config):
        run = root / RUNS / run_dir(agent, task, seed)
        log = root / train_log(agent, task, seed)
        cell = inspect(CellStatus(agent, task, seed), run, log, queue, now, stale_minutes)
        if cell.total is None:
            saved = run / "config.yaml"
            if saved.exists():
                cell.total = (yaml.safe_load(saved.read_text()) or {}).get("num_train_frames")
            if cell.total is None:  # not started: the budget the cell will run with
                budgets = budgets or grid.compose_all(config)
                cell.total = int(budgets[(agent, task, seed)].num_train_frames)
            if cell.state == "done":
                cell.frame = cell.total
        cells.append(cell)
    return cells


def report(cells: list[CellStatus], config: dict, composed: dict, at_once: tuple[int, str]) -> str:
    """The table of cells, the count per state, then the cost block of what is left (grid.Cost):
    `composed` is every cell's config (grid.compose_all), `at_once` grid.cells_at_once's."""
    speeds = _speeds(cells, config["resources"]["frames_per_hour"])
    width = max([len(f"{c.agent}/{c.task}/seed{c.seed}") for c in cells], default=4)
    lines = [f"{'cell':<{width}}  {'state':<11}  detail"]
    for c in cells:
        lines.append(f"{c.agent + '/' + c.task + '/seed' + str(c.seed):<{width}}  {c.state:<11}  {c.detail}"
                     .rstrip())
    counts = {s: sum(c.state == s for c in cells) for s in STATES}
    lines.append("")
    lines.append(f"{len(cells)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    left = {(c.agent, c.task, c.seed): (c.remaining, speeds[(c.agent, c.task, c.seed)] * 3600, bool(c.fps))
            for c in cells}
    if not cells:
        return "\n".join(lines)
    lines += grid.grid_cost(config, composed, left, at_once,
                            "the median measured on their agent and task, else "
                            "resources.frames_per_hour").lines()
    return "\n".join(lines)


def at_once_here(config: dict, cells_left: int, jobs: int | None) -> tuple[int, str]:
    """Cells that would train at once: --jobs N, else this machine's cores and GPU slots, as a
    local Snakemake run would count them (grid.cells_at_once)."""
    gpus = grid.detected_gpus() if config["train"]["device"] == "cuda" and not jobs else []
    slots = len(gpus) * config["resources"]["jobs_per_gpu"] if gpus else None
    return grid.cells_at_once(config, cells_left, jobs, os.cpu_count(), slots)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drm.status", description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", nargs="+", default=[], type=Path,
                        help="config files over config/config.yaml, as given to snakemake")
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="the workflow's directory (holds config/, results/)")
    parser.add_argument("--stale-minutes", type=float, default=STALE_MINUTES,
                        help="a cell whose logs are older than this (or 3x its log interval) is not running")
    parser.add_argument("--jobs", type=int, default=None,
                        help="cells training at once, for the totals, as given to snakemake (the SLURM "
                             "profile's jobs: 100); default: this machine's cores and GPU slots")
    args = parser.parse_args(argv)
    try:
        config = load_config([args.root / "config" / "config.yaml", *args.configfile])
        cells = status(config, args.root, stale_minutes=args.stale_minutes)
        composed = grid.compose_all(config)
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report(cells, config, composed, at_once_here(config, sum(bool(c.remaining) for c in cells),
                                                       args.jobs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
