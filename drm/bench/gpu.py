"""`python -m drm.bench --gpu`: what cells cost on one GPU, alone and sharing it, as the workflow runs them.

One short prepared run reports:
- the DrQ-v2 update's milliseconds at batch 256 with the cells' settings (drm.train's
  `configure_determinism(False)`: cuDNN benchmarking, the workflow's torch threads), once with
  TF32 convolutions (the default, as the official codes) and once with FP32 ones;
- for 1, 2, 4 and 8 DrQ-v2 cells started together on that GPU (real `python -m drm.train`
  cells: standard 1000-frame episodes, the workflow's threads, the batch pipeline): frames/s per
  cell and per GPU, measured only over the window in which every cell of the group was past its
  warm-up episode and still training (the barrier: cells that start or finish alone do not
  count); the GPU memory per cell including rendering (the device's whole used memory over its
  idle level, from nvidia-smi: EGL contexts are missing from `--query-compute-apps`); the CPU
  cores each cell used; and how much of the batch pipeline's sampling and copying the loop
  never waited for (meta.json's `batches`).
These are the figures a user needs to choose `resources.jobs_per_gpu` and threads.

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
from datetime import datetime, timezone
from pathlib import Path

TASK = "cheetah_run"
REPO = Path(__file__).resolve().parents[2]


def workflow_threads() -> int:
    """The torch threads a training job gets: config/config.yaml's train.threads (else 1)."""
    import yaml

    try:
        return int(yaml.safe_load((REPO / "config" / "config.yaml").read_text())["train"]["threads"])
    except (OSError, KeyError, TypeError, ValueError):
        return 1


def _nvidia_smi(*args: str) -> str:
    if shutil.which("nvidia-smi") is None:
        return ""
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=10)
    except (subprocess.TimeoutExpired, OSError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def device_memory_mib(gpu_id: str | None) -> float | None:
    """The GPU's whole used memory (CUDA contexts, EGL rendering, everything), from nvidia-smi."""
    if gpu_id is None:
        return None
    out = _nvidia_smi("--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", gpu_id).strip()
    try:
        return float(out.splitlines()[0])
    except (IndexError, ValueError):
        return None


def nvidia_smi_id(device: str) -> str | None:
    """The device as nvidia-smi names it (its UUID), whatever CUDA_VISIBLE_DEVICES renumbered."""
    import torch

    if not device.startswith("cuda"):
        return None
    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    return f"GPU-{uuid}" if uuid is not None else None


def cell_command(out_dir: Path, seed: int, device: str, threads: int, episode_frames: int,
                 seed_frames: int, update_episodes: int, batch_size: int) -> list[str]:
    """One DrQ-v2 cell: `seed_frames` of seeding, then `update_episodes` episodes of updates."""
    return [sys.executable, "-m", "drm.train", "agent=drqv2", f"task={TASK}", f"seed={seed}",
            f"out_dir={out_dir}", f"device={device}", f"threads={threads}", "progress=false",
            f"episode_frames={episode_frames}", f"num_seed_frames={seed_frames}",
            f"num_train_frames={seed_frames + episode_frames * update_episodes}",
            f"batch_size={batch_size}", "replay_buffer_size=100000",
            "eval_every_frames=100000000", "num_eval_episodes=1", "snapshot_every_frames=100000000"]


def episode_windows(out: Path, seed_frames: int, episode_frames: int) -> list[tuple[float, float, float]]:
    """(start, end, frames/s) in wall-clock seconds of each episode after the warm-up one (the
    first with updates: cuDNN's autotuning, the allocator's growth)."""
    import pandas as pd

    train = pd.read_csv(out / "train.csv")
    # total_time counts from the loop's start, which train.log's "start" line stamps (to 1 s).
    line = next(x for x in (out / "train.log").read_text().splitlines() if " start " in x)
    started = datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    rows = train[train.frame > seed_frames + episode_frames]
    return [(started + r.total_time - r.episode_length / r.fps, started + r.total_time, float(r.fps))
            for r in rows.itertuples()]


def barrier_rates(windows: list[list[tuple[float, float, float]]]) -> tuple[list[float], bool]:
    """Each cell's frames/s over its episodes inside the window in which every cell was training
    (after its warm-up, before its end); with none inside, over all its measured episodes, and
    the flag says the cells did not overlap."""
    start = max(w[0][0] for w in windows)
    end = min(w[-1][1] for w in windows)
    inside = [[fps for s, e, fps in cell if s >= start - 1e-6 and e <= end + 1e-6] for cell in windows]
    if all(inside):
        return [sum(x) / len(x) for x in inside], True
    return [sum(fps for _, _, fps in cell) / len(cell) for cell in windows], False


def run_cells(n: int, device: str, threads: int, episode_frames: int, seed_frames: int,
              update_episodes: int, batch_size: int, timeout_s: float) -> dict:
    """Start `n` cells together on one device; the group's figures."""
    gpu_id = nvidia_smi_id(device)
    idle = device_memory_mib(gpu_id)
    peak = [idle]
    with tempfile.TemporaryDirectory() as scratch:
        procs, started = [], time.time()
        for i in range(n):
            out = Path(scratch) / f"cell{i}"
            log = open(Path(scratch) / f"cell{i}.log", "w")
            command = cell_command(out, i + 1, device, threads, episode_frames, seed_frames,
                                   update_episodes, batch_size)
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
            procs.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), out, log))
        done = threading.Event()

        def sample():
            while not done.wait(1.0):
                used = device_memory_mib(gpu_id)
                if used is not None:
                    peak[0] = max(peak[0] or 0.0, used)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            reaped = _reap([p for p, _, _ in procs], started, timeout_s)
        finally:
            done.set()
            for proc, _, log in procs:
                log.close()
                if proc.poll() is None:
                    proc.kill()
        cores, windows, hidden = [], [], []
        for (proc, out, log), (status, usage, wall) in zip(procs, reaped):
            if status != 0:
                tail = Path(log.name).read_text().strip().splitlines()[-3:]
                raise RuntimeError(f"cell {out.name} failed (exit {status}): {' | '.join(tail)}")
            cores.append((usage.ru_utime + usage.ru_stime) / wall)
            windows.append(episode_windows(out, seed_frames, episode_frames))
            hidden.append(json.loads((out / "meta.json").read_text())["batches"]["hidden"])
    if not all(windows):
        raise RuntimeError("no episode after the warm-up one: give --update-episodes 2 or more")
    rates, overlapped = barrier_rates(windows)
    known_hidden = [h for h in hidden if h is not None]
    return {
        "cells": n, "frames_per_s_per_cell": sum(rates) / n, "frames_per_s_per_gpu": sum(rates),
        "all_cells_overlapped": overlapped,
        "gpu_mib_per_cell_incl_rendering": (peak[0] - idle) / n if idle is not None else None,
        "cpu_cores_per_cell": sum(cores) / n,
        "sample_and_copy_hidden_pct": 100 * sum(known_hidden) / len(known_hidden) if known_hidden else None,
    }


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


def update_ms(device: str, batch_size: int, reps: int, threads: int, conv_precision: str) -> float:
    """Median ms of one DrQ-v2 update on `device` with the cells' settings and the given cuDNN
    convolution precision ("tf32" or "ieee"), synchronised so the GPU's work is counted."""
    import numpy as np
    import torch

    from drm.bench import workload
    from drm.train import configure_determinism

    torch.set_num_threads(threads)
    configure_determinism(False)
    torch.backends.cudnn.conv.fp32_precision = conv_precision
    torch.backends.cudnn.rnn.fp32_precision = conv_precision
    try:
        agent = workload.drqv2_agent(device)
        batch = tuple(x.to(device) for x in workload.random_batch(batch_size))
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        times = []
        for i in range(reps + 3):  # three warm-up updates: cuDNN's autotuning
            sync()
            start = time.perf_counter()
            agent.update(batch, 10_000)
            sync()
            if i >= 3:
                times.append((time.perf_counter() - start) * 1000)
    finally:
        configure_determinism(False)
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
    parser.add_argument("--threads", type=int, default=workflow_threads(),
                        help="torch threads per cell (default: config/config.yaml's train.threads)")
    parser.add_argument("--reps", type=int, default=20, help="timed updates at --batch-size")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--episode-frames", type=int, default=1000)
    parser.add_argument("--seed-frames", type=int, default=1000, help="frames before the first update")
    parser.add_argument("--update-episodes", type=int, default=3,
                        help="episodes with updates per cell; the first is warm-up, not measured")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per group of cells")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.update_episodes < 2:
        parser.error(f"--update-episodes {args.update_episodes}: give 2 or more (the first is warm-up)")

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"drm.bench --gpu: --device {args.device} but torch sees no CUDA device "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use a GPU machine, "
              "or --device cpu to exercise the path", file=sys.stderr)
        return 2
    cuda = args.device.startswith("cuda")
    result = {
        "device": args.device, "gpu": torch.cuda.get_device_name(args.device) if cuda else None,
        "batch_size": args.batch_size, "threads_per_cell": args.threads,
        "update_ms_tf32_conv": update_ms(args.device, args.batch_size, args.reps, args.threads, "tf32"),
        "update_ms_fp32_conv": update_ms(args.device, args.batch_size, args.reps, args.threads, "ieee"),
        "groups": [run_cells(n, args.device, args.threads, args.episode_frames, args.seed_frames,
                             args.update_episodes, args.batch_size, args.timeout) for n in args.cells],
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"device {result['device']}" + (f" ({result['gpu']})" if result["gpu"] else "")
          + f", {args.threads} torch threads per cell")
    print(f"update at batch {args.batch_size}: {result['update_ms_tf32_conv']:.1f} ms with TF32 convolutions "
          f"(the default), {result['update_ms_fp32_conv']:.1f} ms with FP32 ones")
    print(f"{'cells':>5}  {'frames/s per cell':>17}  {'frames/s per GPU':>16}  {'GPU MiB per cell':>16}  "
          f"{'CPU cores per cell':>18}  {'sample+copy hidden':>18}")
    for g in result["groups"]:
        mib = g["gpu_mib_per_cell_incl_rendering"]
        hidden = g["sample_and_copy_hidden_pct"]
        print(f"{g['cells']:>5}  {g['frames_per_s_per_cell']:>17.1f}  {g['frames_per_s_per_gpu']:>16.1f}  "
              f"{'n/a' if mib is None else f'{mib:.0f}':>16}  {g['cpu_cores_per_cell']:>18.2f}  "
              f"{'n/a' if hidden is None else f'{hidden:.0f}%':>18}"
              + ("" if g["all_cells_overlapped"] else "  (cells did not overlap: each over its own episodes)"))
    return 0
