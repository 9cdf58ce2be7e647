"""`python -m drm.bench --against-official DIR`: the official DrQ-v2 code's end-to-end frames/s
once updates run, then our cell's (drm.bench.cell.end_to_end), side by side on this machine:
cheetah_run, 1000-frame episodes, batch 256, 1000 frames with updates, the same torch threads and
allocator settings. The official code is never part of this repo: DIR is the user's own checkout
of facebookresearch/drqv2 (c0c650b), whose drqv2.py, dmc.py, replay_buffer.py and utils.py run
train.py's training loop as written here, without Hydra, logger, evaluation or video.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drm.bench import workload
from drm.bench.cell import EPISODE_FRAMES, TASK, end_to_end

PROG = "python -m drm.bench --against-official"
OFFICIAL_FILES = ("drqv2.py", "dmc.py", "replay_buffer.py", "utils.py")
SEED, FRAME_STACK, ACTION_REPEAT = 1, 3, 2  # cfgs/config.yaml
# cfgs/config.yaml's agent for cheetah_run (the benchmarks' settings), with its exploration steps
AGENT = dict(workload.SETTINGS, num_expl_steps=2000, update_every_steps=2, use_tb=False)
REPLAY = dict(max_size=1_000_000, nstep=3, discount=0.99)  # replay_buffer_size, nstep, discount


def official_dir(path: str, files=OFFICIAL_FILES, repo: str = "facebookresearch/drqv2",
                 prog: str = PROG) -> Path:
    """The checkout of `repo`, or SystemExit in one line naming the path and what it must hold
    (also drm.bench.official_run's check, for its repo and files)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        problem = "is not a directory" if root.exists() else "does not exist"
    else:
        missing = [name for name in files if not (root / name).is_file()]
        if not missing:
            return root.resolve()
        problem = f"lacks {', '.join(missing)}"
    raise SystemExit(f"{prog}: {path} {problem}: expected a checkout of {repo} holding {', '.join(files)}")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("official", metavar="DIR", help="a checkout of facebookresearch/drqv2")
    parser.add_argument("--frames", type=int, default=1000,
                        help="timed frames after seeding, whole 1000-frame episodes")
    parser.add_argument("--seed-frames", type=int, default=None,
                        help="untimed frames before the first update (default: 1000 per replay worker)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    parser.add_argument("--batch", type=int, default=256, help="batch size (smaller only for a smoke test)")
    parser.add_argument("--workers", type=int, default=4,
                        help="replay loader workers (the official replay_buffer_num_workers)")
    args = parser.parse_args(argv)
    # The official loader's worker w reads only episodes i with i % workers == w and fails
    # (IndexError in random.choice) while it has none: it needs one finished episode per worker
    # before the first update. Hence 1000 seed frames per worker (4 workers: 4000, the official
    # num_seed_frames); `--workers 1 --seed-frames 1000` seeds as our cell does. Seeding is untimed.
    if args.seed_frames is None:
        args.seed_frames = EPISODE_FRAMES * max(1, args.workers)
    for name in ("frames", "threads", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: give a positive integer")
    if args.frames % EPISODE_FRAMES:
        parser.error(f"--frames {args.frames}: give whole {EPISODE_FRAMES}-frame episodes (our cell "
                     "times episodes)")
    if args.workers < 0:
        parser.error(f"--workers {args.workers}: give 0 (load in this process) or more")
    if args.seed_frames // EPISODE_FRAMES < max(1, args.workers):
        parser.error(f"--seed-frames {args.seed_frames} with --workers {args.workers}: the official "
                     f"loader needs a finished {EPISODE_FRAMES}-frame episode per worker before the "
                     f"first update; give --seed-frames >= {EPISODE_FRAMES * max(1, args.workers)}")
    return args


class _TimedIter:
    """The loader's iterator, counting the seconds `agent.update` waits in next() for a batch."""

    def __init__(self, it):
        self.it, self.wait_s = it, 0.0

    def __next__(self):
        start = time.perf_counter()
        batch = next(self.it)
        self.wait_s += time.perf_counter() - start
        return batch


def run(official: Path, frames: int, seed_frames: int, threads: int, batch: int, workers: int) -> dict:
    """The official loop's measurement, in a child Python whose path starts at the checkout: its
    modules import each other by bare name (`import utils`), and this process's path stays ours."""
    settings = dict(official=str(official), frames=frames, seed_frames=seed_frames, threads=threads,
                    batch=batch, workers=workers)
    # The checkout first, then the folder holding this drm (the child imports the same harness).
    ours = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (str(official), ours, os.environ.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="drqv2-official-result-") as tmp:
        result = Path(tmp) / "result.json"
        done = subprocess.run([sys.executable, "-m", __name__, json.dumps(settings), str(result)],
                              cwd=official, env={**os.environ, "PYTHONPATH": path})
        if done.returncode != 0:
            raise SystemExit(f"{PROG}: the official loop in {official} failed (exit {done.returncode})")
        return json.loads(result.read_text())


def measure(official: str, frames: int, seed_frames: int, threads: int, batch: int, workers: int) -> dict:
    """train.py's loop on the official modules; run by `run` in a child whose path starts at them."""
    import torch

    official = Path(official)
    torch.set_num_threads(threads)
    from drm.cell import rendering

    backend = rendering.choose_backend()  # our cell's choice (train.py forces egl), before dm_control
    import dmc
    import drqv2
    import numpy as np
    import utils
    from dm_env import specs
    from replay_buffer import ReplayBufferStorage, make_replay_loader

    for module in (dmc, drqv2, utils):
        if Path(module.__file__).resolve().parent != official:
            raise SystemExit(f"{PROG}: module {module.__name__} came from {module.__file__}, "
                             f"not from {official}")

    with tempfile.TemporaryDirectory(prefix="drqv2-official-") as tmp:
        utils.set_seed_everywhere(SEED)
        env = dmc.make(TASK, FRAME_STACK, ACTION_REPEAT, SEED)
        data_specs = (env.observation_spec(), env.action_spec(),
                      specs.Array((1,), np.float32, "reward"), specs.Array((1,), np.float32, "discount"))
        storage = ReplayBufferStorage(data_specs, Path(tmp) / "buffer")
        loader = make_replay_loader(Path(tmp) / "buffer", REPLAY["max_size"], batch, workers,
                                    False, REPLAY["nstep"], REPLAY["discount"])
        agent = drqv2.DrQV2Agent(env.observation_spec().shape, env.action_spec().shape, device="cpu",
                                 **AGENT)

        train_until = utils.Until(seed_frames + frames, ACTION_REPEAT)
        seed_until = utils.Until(seed_frames, ACTION_REPEAT)
        step, updates, replay_iter, start, first_update_s = 0, 0, None, None, None
        time_step = env.reset()
        storage.add(time_step)
        while train_until(step):
            if time_step.last():
                time_step = env.reset()
                storage.add(time_step)
            if start is None and not seed_until(step):
                start = time.perf_counter()  # the first step that updates, from its action on
            with torch.no_grad(), utils.eval_mode(agent):
                action = agent.act(time_step.observation, step, eval_mode=False)
            if not seed_until(step):
                if replay_iter is None:  # train.py's replay_iter property: workers start here
                    replay_iter = _TimedIter(iter(loader))
                began = time.perf_counter()
                agent.update(replay_iter, step)
                if step % agent.update_every_steps == 0:
                    updates += 1
                    if first_update_s is None:
                        first_update_s = time.perf_counter() - began
            time_step = env.step(action)
            storage.add(time_step)
            step += 1
        elapsed = time.perf_counter() - start
        batch_wait_s = replay_iter.wait_s if replay_iter is not None else 0.0
        del replay_iter  # stops the workers before their directory goes

    timed_frames = (step - seed_frames // ACTION_REPEAT) * ACTION_REPEAT
    return {"official_frames_per_s": timed_frames / elapsed, "frames": timed_frames, "updates": updates,
            "threads": threads, "seed_frames": seed_frames, "batch": batch, "workers": workers,
            "elapsed_s": elapsed, "first_update_s": first_update_s, "batch_wait_s": batch_wait_s,
            "task": TASK, "rendering": backend, "official": str(official)}


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    official = official_dir(args.official)
    result = run(official, args.frames, args.seed_frames, args.threads, args.batch, args.workers)
    if args.batch == 256:  # ours runs at the official batch only
        result["ours_frames_per_s"] = end_to_end(args.frames // EPISODE_FRAMES)
        result["ours_over_official"] = result["ours_frames_per_s"] / result["official_frames_per_s"]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":  # the child of `run`: argv is its settings as JSON and the result's path
    Path(sys.argv[2]).write_text(json.dumps(measure(**json.loads(sys.argv[1]))))
