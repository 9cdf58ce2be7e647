"""`python -m drm.bench --gpu`: what cells cost on one GPU, alone and sharing it.

On a GPU machine, one short prepared run reports: the update's milliseconds at batch 256 on the
device; then, for 1, 2, 4 and 8 DrQ-v2 cells started together on that one GPU (standard
1000-frame episodes, 1 torch thread each, as the workflow runs them), each cell's frames/s once
updates run (its train.csv `fps`), the GPU's total across cells, each cell's peak GPU memory
(nvidia-smi, sampled) and the CPU cores each cell used (its CPU seconds over its wall time).
These are the figures a user needs to choose `resources.gpu` and cells per GPU.

`--device cpu` runs the same measurement on the CPU (the tests do, with tiny cells), so the
path is exercised on machines without a GPU. Without CUDA, `--device cuda` is refused in one
line before anything starts.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TASK = "cheetah_run"


def _gpu_memory_mib() -> dict[int, float]:
    """pid -> MiB used on the GPU, from nvidia-smi (empty where there is none)."""
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=10).stdout
    except (subprocess.TimeoutExpired, OSError):
        return {}
    usage = {}
    for line in out.strip().splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip().isdigit() and mib.strip().replace(".", "", 1).isdigit():
            usage[int(pid)] = float(mib)
    return usage


def cell_command(out_dir: Path, seed: int, device: str, episode_frames: int, seed_frames: int,
                 update_episodes: int, batch_size: int) -> list[str]:
    """One DrQ-v2 cell: `seed_frames` of seeding, then `update_episodes` episodes of updates."""
    return [sys.executable, "-m", "drm.train", "agent=drqv2", f"task={TASK}", f"seed={seed}",
            f"out_dir={out_dir}", f"device={device}", "threads=1", "progress=false",
            f"episode_frames={episode_frames}", f"num_seed_frames={seed_frames}",
            f"num_train_frames={seed_frames + episode_frames * update_episodes}",
            f"batch_size={batch_size}", "replay_buffer_size=100000",
            "eval_every_frames=100000000", "num_eval_episodes=1", "snapshot_every_frames=100000000"]


def run_cells(n: int, device: str, episode_frames: int, seed_frames: int, update_episodes: int,
              batch_size: int, timeout_s: float) -> list[dict]:
    """Start `n` cells together; per cell: frames/s with updates, CPU cores used, peak GPU MiB."""
    import pandas as pd

    peak: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        procs, started = [], time.time()
        for i in range(n):
            out = Path(scratch) / f"cell{i}"
            log = open(Path(scratch) / f"cell{i}.log", "w")
            procs.append((subprocess.Popen(
                cell_command(out, i + 1, device, episode_frames, seed_frames, update_episodes, batch_size),
                stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1")), out, log))
        done = threading.Event()

        def sample():
            while not done.wait(2.0):
                for pid, mib in _gpu_memory_mib().items():
                    peak[pid] = max(peak.get(pid, 0.0), mib)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rows = []
        try:
            for (proc, out, log), (status, usage, wall) in zip(procs, _reap([p for p, _, _ in procs], started, timeout_s)):
                log.close()
                if status != 0:
                    tail = Path(log.name).read_text().strip().splitlines()[-3:]
                    raise RuntimeError(f"cell {out.name} failed (exit {status}): {' | '.join(tail)}")
                train = pd.read_csv(out / "train.csv")
                rows.append({"cells": n, "frames_per_s": float(train[train.frame > seed_frames].fps.mean()),
                             "cpu_cores": (usage.ru_utime + usage.ru_stime) / wall,
                             "gpu_mib": peak.get(proc.pid)})
        finally:
            done.set()
            for proc, _, _ in procs:
                if proc.poll() is None:
                    proc.kill()
    return rows


def _reap(procs: list[subprocess.Popen], started: float, timeout_s: float) -> list[tuple]:
    """(exit status, own rusage, wall seconds) per child, as each ends (os.wait4 gives each
    child's CPU time, unlike RUSAGE_CHILDREN); all killed past the timeout."""
    ended: dict[int, tuple] = {}
    while len(ended) < len(procs):
        for proc in procs:
            if proc.pid in ended:
                continue
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                ended[pid] = (proc.returncode, usage, time.time() - started)
        if time.time() - started > timeout_s and len(ended) < len(procs):
            for proc in procs:
                if proc.pid not in ended:
                    proc.kill()
            raise RuntimeError(f"benchmark cells ran past {timeout_s:.0f} s and were killed")
        time.sleep(0.5)
    return [ended[p.pid] for p in procs]


def update_ms(device: str, batch_size: int, reps: int) -> float:
    """Median ms of one DrQ-v2 update on `device` (synchronised, so the GPU's work is counted)."""
    import numpy as np
    import torch

    from drm.bench import workload

    agent = workload.drqv2_agent(device)
    batch = workload.random_batch(batch_size)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(reps + 2):
        sync()
        start = time.perf_counter()
        agent.update(batch, 10_000)
        sync()
        if i >= 2:
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def _cells_list(text: str) -> list[int]:
    try:
        cells = [int(x) for x in text.split(",")]
    except ValueError:
        cells = []
    if not cells or min(cells) < 1:
        raise argparse.ArgumentTypeError(f"--cells {text!r}: give positive integers separated by commas, e.g. 1,2,4,8")
    return cells


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drm.bench --gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu to exercise the path")
    parser.add_argument("--cells", type=_cells_list, default=[1, 2, 4, 8], help="cells sharing the device, e.g. 1,2,4,8")
    parser.add_argument("--reps", type=int, default=20, help="timed updates at --batch-size")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--episode-frames", type=int, default=1000)
    parser.add_argument("--seed-frames", type=int, default=1000, help="frames before the first update")
    parser.add_argument("--update-episodes", type=int, default=2, help="episodes with updates per cell")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per group of cells")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"drm.bench --gpu: --device {args.device} but torch sees no CUDA device "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use a GPU machine, "
              "or --device cpu to exercise the path", file=sys.stderr)
        return 2
    result = {"device": args.device, "gpu": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None,
              "update_ms": update_ms(args.device, args.batch_size, args.reps), "batch_size": args.batch_size,
              "groups": []}
    for n in args.cells:
        rows = run_cells(n, args.device, args.episode_frames, args.seed_frames, args.update_episodes,
                         args.batch_size, args.timeout)
        mib = [r["gpu_mib"] for r in rows if r["gpu_mib"] is not None]
        result["groups"].append({
            "cells": n, "frames_per_s_per_cell": sum(r["frames_per_s"] for r in rows) / n,
            "frames_per_s_total": sum(r["frames_per_s"] for r in rows),
            "cpu_cores_per_cell": sum(r["cpu_cores"] for r in rows) / n,
            "gpu_mib_per_cell": max(mib) if mib else None})
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"device {result['device']}" + (f" ({result['gpu']})" if result["gpu"] else ""))
    print(f"update at batch {args.batch_size}: {result['update_ms']:.1f} ms")
    print(f"{'cells':>5}  {'frames/s per cell':>17}  {'frames/s total':>14}  {'CPU cores per cell':>18}  {'GPU MiB per cell':>16}")
    for g in result["groups"]:
        mib = "n/a" if g["gpu_mib_per_cell"] is None else f"{g['gpu_mib_per_cell']:.0f}"
        print(f"{g['cells']:>5}  {g['frames_per_s_per_cell']:>17.1f}  {g['frames_per_s_total']:>14.1f}  "
              f"{g['cpu_cores_per_cell']:>18.2f}  {mib:>16}")
    return 0
