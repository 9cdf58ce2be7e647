"""What watching a cell costs (`python -m drm.bench --watch`): evaluation videos and TensorBoard.

A video: one evaluation episode of cheetah_run at DMC's standard 1000 frames (500 agent steps),
played with and without filming, the same actions; the difference is what filming adds to a
filmed evaluation (a 256x256 render per step and the H.264 encoder), set against the evaluation
itself (10 such episodes at the default num_eval_episodes; acting not counted, so the share is
an upper bound), and its file's bytes. TensorBoard: the time to log a DrM train row (one per
episode) and an evaluation row (one per eval_every_frames, flushed), per 1000 frames at the
defaults, against 1000 frames of a cell on this machine at its learner-bound rate (DrQ-v2's
update at batch 256 timed here, one update per 4 frames: a cell is never faster, so the share
is an upper bound), and the frames/s at which it would reach the 3% target.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from drm.bench.output import print_figures

TASK = "cheetah_run"
EPISODE_FRAMES = 1000
DEFAULTS = dict(num_eval_episodes=10, eval_every_frames=10_000, num_eval_videos=5,
                num_train_frames=1_100_000)  # drm/cfg/config.yaml, and the easy tier's budget
TARGET_PCT = 3.0


def _episode_seconds(env, actions, recording_path: Path | None) -> float:
    from drm.cell import video

    start = time.perf_counter()
    recording = video.Recording(recording_path) if recording_path is not None else None
    ts = env.reset()
    if recording is not None:
        recording.add(env.render_rgb(video.RENDER_SIZE))
    step = 0
    while not ts.last:
        ts = env.step(actions[step])
        step += 1
        if recording is not None:
            recording.add(env.render_rgb(video.RENDER_SIZE))
    if recording is not None:
        recording.close()
    return time.perf_counter() - start


def video_cost(reps: int) -> dict:
    import numpy as np

    from drm.cell import rendering

    rendering.choose_backend()
    from drm.cell.dmc import PixelEnv

    env = PixelEnv(TASK, seed=1, episode_frames=EPISODE_FRAMES)
    actions = np.random.default_rng(0).uniform(-1, 1, (EPISODE_FRAMES, *env.action_shape)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "0.mp4"
        plain = [_episode_seconds(env, actions, None) for _ in range(reps)]
        filmed = [_episode_seconds(env, actions, path) for _ in range(reps)]
        size = path.stat().st_size
    plain_s, filmed_s = statistics.median(plain), statistics.median(filmed)
    added = filmed_s - plain_s
    return {"episode_s": plain_s, "video_s_per_evaluation": added, "video_bytes": size,
            "video_pct_of_evaluation": 100 * added / (plain_s * DEFAULTS["num_eval_episodes"])}


def _drm_train_row(frame: int) -> dict:
    row = {"frame": frame, "step": frame // 2, "episode": frame // EPISODE_FRAMES, "episode_reward": 512.3,
           "episode_length": EPISODE_FRAMES, "buffer_size": frame // 2, "fps": 123.4, "total_time": 1e4}
    for column in ("actor_dormant_ratio", "batch_reward", "critic_loss", "critic_q1", "critic_q2",
                   "critic_target_q", "actor_loss", "stddev", "v_loss", "exploit_lambda", "perturb_count",
                   "awaken_step"):
        row[column] = 0.123
    return row


def logging_cost(rows: int) -> dict:
    """Seconds per train row and per (flushed) evaluation row, logged to real event files."""
    from drm.cell.loggers import TensorBoardLog

    with tempfile.TemporaryDirectory() as tmp:
        log = TensorBoardLog(Path(tmp), None)
        start = time.perf_counter()
        for i in range(rows):
            log.write("train", _drm_train_row(EPISODE_FRAMES * (i + 1)))
        log.state()  # everything on disk
        train_s = (time.perf_counter() - start) / rows
        start = time.perf_counter()
        for i in range(rows):
            log.write("eval", {"frame": 10_000 * i, "step": 5_000 * i, "episode": i, "episode_reward": 500.0,
                               "episode_length": 1000.0, "total_time": 1.0})
        eval_s = (time.perf_counter() - start) / rows
        log.close()
    per_1000_frames = (train_s * 1000 / EPISODE_FRAMES + eval_s * 1000 / DEFAULTS["eval_every_frames"])
    return {"train_row_ms": 1000 * train_s, "eval_row_ms": 1000 * eval_s,
            "tensorboard_ms_per_1000_frames": 1000 * per_1000_frames}


def learner_bound_frames_per_s(reps: int) -> float:
    from drm.bench import workload
    from drm.bench.cell import _timed

    agent = workload.drqv2_agent()
    batch = workload.random_batch(256)
    return 4000.0 / _timed(lambda: agent.update(batch, 10_000), reps=reps, warmup=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drm.bench --watch", description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="episodes played each way; updates timed")
    parser.add_argument("--rows", type=int, default=300, help="rows logged each kind")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    out = {**video_cost(args.reps), **logging_cost(args.rows)}
    fps = learner_bound_frames_per_s(args.reps)
    seconds_per_1000 = 1000 / fps
    tb_pct = 100 * out["tensorboard_ms_per_1000_frames"] / 1000 / seconds_per_1000
    cell_s = DEFAULTS["num_train_frames"] / fps
    out.update({
        "learner_bound_frames_per_s": fps,
        "tensorboard_pct_of_cell": tb_pct,
        "tensorboard_3pct_at_frames_per_s": TARGET_PCT * 1000 / out["tensorboard_ms_per_1000_frames"] * 1000 / 100,
        "videos_pct_of_cell": 100 * DEFAULTS["num_eval_videos"] * out["video_s_per_evaluation"] / cell_s,
    })
    if args.json:
        print_figures(out, as_json=True)
        return 0
    lines = [
        (f"video of one evaluation ({TASK}, {EPISODE_FRAMES} frames)",
         f"+{out['video_s_per_evaluation']:.2f} s per filmed evaluation "
         f"({out['video_pct_of_evaluation']:.1f}% of a {DEFAULTS['num_eval_episodes']}-episode evaluation; "
         f"an episode unfilmed: {out['episode_s']:.2f} s), {out['video_bytes']:,} bytes"),
        (f"videos at the defaults ({DEFAULTS['num_eval_videos']} per 1.1M-frame cell)",
         f"{out['videos_pct_of_cell']:.3f}% of the cell at {fps:.2f} frames/s"),
        ("TensorBoard: a train row / an evaluation row (flushed)",
         f"{out['train_row_ms']:.2f} ms / {out['eval_row_ms']:.2f} ms"),
        ("TensorBoard at the defaults",
         f"{out['tensorboard_ms_per_1000_frames']:.2f} ms per 1000 frames = {tb_pct:.4f}% of a cell at "
         f"this machine's learner-bound {fps:.2f} frames/s (target < {TARGET_PCT:.0f}%); "
         f"{TARGET_PCT:.0f}% only at {out['tensorboard_3pct_at_frames_per_s']:,.0f} frames/s"),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}  {value}")
    return 0
