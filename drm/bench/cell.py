"""The cell benchmark (`python -m drm.bench [--json]`): what one training cell costs on this machine.

Targets (the README's Benchmarks): replay <= 21.7 KB per transition; the dormant ratio <= 3% of
an update; DrM's update <= 1.1x DrQ-v2's; end-to-end frames/s >= 90% of the learner-bound rate
(4000 / update ms, one update per 4 frames) at batch 256; the update at >= 60% of the machine's
own matmul ceiling (drm.bench.ceiling), measured in the same run. `--profile` adds where an
update's time goes, op by op.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


TASK = "cheetah_run"
EPISODE_FRAMES = 1000  # DMC's standard episode


def _timed(fn, reps: int, warmup: int = 2) -> float:
    """Median milliseconds of `fn()` over `reps` calls after `warmup` calls."""
    import numpy as np

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def micro(reps: int, profile: bool = False) -> dict:
    import numpy as np
    import torch

    from drm.bench import ceiling, workload
    from drm.cell import rendering

    rendering.choose_backend()
    from drm.cell.dmc import PixelEnv
    from drm.dormant import dormant_ratio
    from drm.cell.replay import ReplayBuffer

    env = PixelEnv(TASK, seed=1)
    ts = env.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (10_000, *env.action_shape)).astype(np.float32)
    counter = iter(range(10**9))
    env_ms = _timed(lambda: env.step(actions[next(counter) % 10_000]), reps=200, warmup=5)

    agent = workload.drqv2_agent("cpu", env.obs_shape, env.action_shape)
    act_ms = _timed(lambda: agent.act(ts.observation, 10_000, eval_mode=False), reps=200, warmup=5)

    b256, b32 = (workload.random_batch(n, env.obs_shape, env.action_shape) for n in (256, 32))
    update_ms_b256 = _timed(lambda: agent.update(b256, 10_000), reps=reps)
    update_ms_b32 = _timed(lambda: agent.update(b32, 10_000), reps=reps * 3)
    drm = workload.drm_agent("cpu", env.obs_shape, env.action_shape)
    drm_update_ms_b256 = _timed(lambda: drm.update(b256, 10_000), reps=reps)
    with torch.no_grad():
        features = agent.encoder(b256[0].float())
    dormant_ms = _timed(lambda: dormant_ratio(agent.actor, (features, 0.0), 0.025), reps=reps * 3)
    flops = ceiling.update_flops(agent, b256, 10_000)
    ceiling_gflops = ceiling.matmul_gflops()
    achieved = flops["total"] / update_ms_b256 / 1e6
    extra = {"profile": ceiling.profile_update(agent, b256, 10_000)} if profile else {}
    return {
        **ceiling.cpu_info(), **extra,
        "update_gflop": flops["total"] / 1e9, "update_gflop_per_op": {k: v / 1e9 for k, v in flops["per_op"].items()},
        "update_gflops": achieved, "matmul_ceiling_gflops": ceiling_gflops,
        "update_pct_of_ceiling": 100.0 * achieved / ceiling_gflops,
        "update_ms_b256": update_ms_b256, "update_ms_b32": update_ms_b32, "act_ms": act_ms,
        "drm_update_ms_b256": drm_update_ms_b256, "drm_over_drqv2_update": drm_update_ms_b256 / update_ms_b256,
        "env_ms": env_ms, "dormant_ms": dormant_ms,
        "dormant_overhead_pct": 100.0 * dormant_ms / update_ms_b256,
        "learner_bound_frames_per_s": 4000.0 / update_ms_b256,
        "replay_bytes_per_transition": ReplayBuffer.bytes_per_step((3, 84, 84), env.action_shape),
        "torch_threads": torch.get_num_threads(),
    }


def end_to_end(update_episodes: int) -> float:
    """Frames/s of a real cell at batch 256 over its episodes with updates (train.csv `fps`),
    with DMC's standard 1000-frame episodes after one episode of seeding, at the thread count
    the update was timed with (a cell's own default is $OMP_NUM_THREADS, else 1)."""
    import pandas as pd
    import torch

    episode, seed_frames = EPISODE_FRAMES, EPISODE_FRAMES
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([
            sys.executable, "-m", "drm.train", "agent=drqv2", f"task={TASK}", "seed=1", f"out_dir={out}",
            f"episode_frames={episode}", f"num_seed_frames={seed_frames}", "batch_size=256",
            f"num_train_frames={seed_frames + episode * update_episodes}", "eval_every_frames=100000000",
            "num_eval_episodes=1", "replay_buffer_size=100000", "progress=false",
            f"threads={torch.get_num_threads()}",
        ], check=True, capture_output=True, timeout=3600)
        train = pd.read_csv(Path(out) / "train.csv")
    return float(train[train.frame > seed_frames].fps.mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drm.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--reps", type=int, default=5, help="timed updates at batch 256")
    parser.add_argument("--update-episodes", type=int, default=1,
                        help="1000-frame episodes with updates in the end-to-end run")
    parser.add_argument("--profile", action="store_true", help="also print the update's time per op")
    parser.add_argument("--aggregate", action="store_true", help="benchmark the statistics instead")
    parser.add_argument("--parse", action="store_true",
                        help="benchmark the workflow's parse time (snakemake -n all) instead")
    parser.add_argument("--gpu", action="store_true",
                        help="benchmark cells on one GPU, alone and sharing it (drm.bench.gpu) instead")
    parser.add_argument("--levers", action="store_true",
                        help="time each candidate speed-up of the update against the default (drm.bench.levers)")
    parser.add_argument("--watch", action="store_true",
                        help="what evaluation videos and TensorBoard logging cost (drm.bench.watch) instead")
    parser.add_argument("--against-official", metavar="DIR",
                        help="the official DrQ-v2 code (a checkout in DIR) end to end beside our cell, "
                             "instead (drm.bench.against_official)")
    parser.add_argument("--official-run", metavar="DIR",
                        help="the official A-LIX code (a checkout in DIR) trained on one task and seed, "
                             "judged against the published band, instead (drm.bench.official_run)")
    args = parser.parse_args(argv)

    result = micro(args.reps, args.profile)
    result["frames_per_s"] = end_to_end(args.update_episodes)
    result["end_to_end_pct_of_learner_bound"] = 100 * result["frames_per_s"] / result["learner_bound_frames_per_s"]
    if args.json:
        print(json.dumps(result))
        return 0
    lines = [
        ("update at batch 256", f"{result['update_ms_b256']:.0f} ms"),
        ("update at batch 32", f"{result['update_ms_b32']:.0f} ms"),
        ("DrM's update at batch 256", f"{result['drm_update_ms_b256']:.0f} ms = "
         f"{result['drm_over_drqv2_update']:.2f}x DrQ-v2's (target <= 1.1x)"),
        ("acting (batch 1)", f"{result['act_ms']:.1f} ms"),
        (f"env step + render ({TASK})", f"{result['env_ms']:.1f} ms"),
        ("learner-bound rate", f"{result['learner_bound_frames_per_s']:.2f} frames/s"),
        ("end-to-end rate, batch 256", f"{result['frames_per_s']:.2f} frames/s "
         f"({result['end_to_end_pct_of_learner_bound']:.0f}% of learner-bound; target >= 90%)"),
        ("replay per transition", f"{result['replay_bytes_per_transition']} B (target <= 21,700 B; "
         "DrQ-v2's layout: 63,504 B)"),
        ("dormant ratio", f"{result['dormant_ms']:.1f} ms = {result['dormant_overhead_pct']:.2f}% "
         "of an update (target <= 3%)"),
        ("torch threads", str(result["torch_threads"])),
        ("CPU", f"{result['cpu_model']}, {result['logical_cores']} logical cores, "
                f"{' '.join(result['isa'])}; torch kernels: {result['torch_cpu_capability']}"),
        ("matmul ceiling (float32)", f"{result['matmul_ceiling_gflops']:.0f} GFLOP/s at {result['torch_threads']} threads"),
        ("update FLOPs at batch 256", f"{result['update_gflop']:.1f} GFLOP ("
         + ", ".join(f"{k} {v:.1f}" for k, v in sorted(result["update_gflop_per_op"].items(), key=lambda kv: -kv[1])) + ")"),
        ("update achieved", f"{result['update_gflops']:.0f} GFLOP/s = {result['update_pct_of_ceiling']:.0f}% "
                            "of the ceiling (target >= 60%)"),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}  {value}")
    if args.profile:
        print(f"\nwhere an update's time goes (self CPU time, {len(result['profile'])} largest ops):")
        for row in result["profile"]:
            print(f"  {row['op']:<40} {row['ms_per_update']:8.1f} ms  {row['share_pct']:5.1f}%  "
                  f"x{row['calls_per_update']}")
    return 0
