"""`python -m drm.bench --official-run DIR`: the official A-LIX code's own training run of one
task and seed, evaluated as our validation runs are and judged against the same published band,
so a run of ours that falls below the band can be set beside the official code's on the same
task, seed, frames and machine (docs/validation.md).

DIR is the user's checkout of Aladoro/Stabilizing-Off-Policy-RL (34665c8); the official code is
never part of this repo. Its `train.py` runs as written (its Hydra config, its agent, its NumPy
replay buffer, its evaluation), with only command-line overrides: the task, seed and device, the
frame budget, evaluation every `--eval-every` frames with 10 episodes, and no video, TensorBoard or
checkpoints. One hook reads A-LIX's smoothing strength S and the ND score it is tuned by after
each update (the official code logs neither), so the run's train.csv has them per episode as ours
does. The official snapshot leaves out the replay buffer (it lives in memory), so this tool takes
its own at an episode's end every --snapshot-every frames: the whole official state a run needs to
go on as if never stopped (agent, buffer, counters, timer, random states, both environments'
random states), written as the cell's are (read back before it replaces the previous one, which
is kept). The same command continues an unfinished run from the newest readable one.

Writes to --out: eval.csv and train.csv (our columns), verdict.csv (each evaluation against the
published DrQ-v2 seeds), official_config.yaml (the config Hydra composed), run.log (the official
code's output) and meta.json (both commits, the command, packages, machine, each start, times).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PROG = "python -m drm.bench --official-run"
OFFICIAL_FILES = ("train.py", "drqv2.py", "analysis_layers.py", "analysis_modules.py",
                  "np_replay_buffer.py", "cfgs/algo/ALIX.yaml")
# The official train.py's imports beyond our environment (its logger and video recorder).
OFFICIAL_PACKAGES = {"termcolor": "termcolor", "cv2": "opencv-python-headless",
                     "imageio": "imageio", "tensorboard": "tensorboard",
                     "hydra_plugins.hydra_submitit_launcher": "hydra-submitit-launcher"}
ACTION_REPEAT = 2  # cfgs/algo/ALIX.yaml
EPISODE_FRAMES = 1000
EVAL_COLUMNS = ["frame", "step", "episode", "episode_reward", "episode_length", "total_time"]
HOOK_COLUMNS = ["lix_nd_score", "lix_s"]  # our A-LIX's train.csv names for the same two values
REPO = Path(__file__).resolve().parents[2]
RECORDED = REPO / "config" / "recorded.yaml"  # the published seeds and reference the kept runs are judged by
AGENT = "alix-official"  # the run's name in verdict.csv: not one of the harness's agents
SNAPSHOT = "resume.pt"  # in the run's work folder (not the official snapshot.pt, which lacks the buffer)


def official_dir(path: str) -> Path:
    """The checkout, or SystemExit in one line naming the path and what it must hold."""
    from drm.bench.against_official import official_dir as checkout

    return checkout(path, OFFICIAL_FILES, "Aladoro/Stabilizing-Off-Policy-RL", PROG)


def missing_packages() -> list[str]:
    """The pip names of the official code's imports this Python lacks."""
    import importlib.util

    missing = []
    for module, package in OFFICIAL_PACKAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(package)
    return missing


def parse_args(argv):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("official", metavar="DIR", help="a checkout of Aladoro/Stabilizing-Off-Policy-RL")
    parser.add_argument("--task", default="cartpole_balance_sparse", help="a task of the official cfgs/task/")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--frames", type=int, default=20000,
                        help="frames to train; the last evaluation is at this frame")
    parser.add_argument("--eval-every", type=int, default=20000,
                        help="frames between evaluations (and one at frame 0), as config/validate.yaml")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (OMP_NUM_THREADS)")
    parser.add_argument("--snapshot-every", type=int, default=2000,
                        help="frames between snapshots (at an episode's end) a stopped run continues from")
    parser.add_argument("--device", default="cpu", help="the official `device` (cpu or cuda)")
    parser.add_argument("--out", default=None,
                        help="results folder (default results/official/alix/<task>/seed<seed>)")
    args = parser.parse_args(argv)
    for name in ("frames", "eval_every", "threads", "snapshot_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: give a positive integer")
    if args.frames % args.eval_every:
        parser.error(f"--frames {args.frames} is not a multiple of --eval-every {args.eval_every}: "
                     "the last evaluation must fall on the last frame")
    for name in ("eval_every", "snapshot_every"):
        if getattr(args, name) % EPISODE_FRAMES:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: give whole "
                         f"{EPISODE_FRAMES}-frame episodes")
    if args.out is None:
        args.out = f"results/official/alix/{args.task}/seed{args.seed}"
    return args


def overrides(task: str, seed: int, frames: int, eval_every: int, device: str, run_dir: Path) -> list[str]:
    """The official train.py's command-line overrides: only what the validation protocol fixes.
    `num_train_frames` is one agent step past `frames`: the official loop evaluates at the top of
    a step, so its last evaluation needs one step at `frames` (our cell evaluates at the end).
    `save_snapshot` makes the official loop call the snapshot at each episode's end; the hooked
    Workspace decides which to take and what it holds."""
    return [f"task@_global_={task}", f"seed={seed}", f"device={device}",
            f"num_train_frames={frames + ACTION_REPEAT}", f"eval_every_frames={eval_every}",
            "num_eval_episodes=10", "save_video=false", "save_train_video=false", "use_tb=false",
            "save_checkpoints=false", "save_snapshot=true", f"hydra.run.dir={run_dir}"]


def official_eval(path: Path) -> list[dict]:
    """The official eval.csv's rows (its logger sorts the columns by name) in our column order."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{"frame": int(float(r["frame"])), "step": int(float(r["step"])),
             "episode": int(float(r["episode"])), "episode_reward": float(r["episode_reward"]),
             "episode_length": float(r["episode_length"]), "total_time": float(r["total_time"])}
            for r in rows]


def official_train(path: Path, hooked: Path) -> list[dict]:
    """The official train.csv's episode rows, each with the hook's S and ND at its frame. The
    official loop logs an episode only once updates ran, so a run that ended within its seed
    frames has no train.csv: no rows."""
    if not path.is_file():
        return []
    with open(hooked, newline="") as f:
        by_frame = {int(r["frame"]): r for r in csv.DictReader(f)}
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            frame = int(float(r["frame"]))
            rows.append({"frame": frame, "step": int(float(r["step"])),
                         "episode": int(float(r["episode"])),
                         "episode_reward": float(r["episode_reward"]),
                         "episode_length": int(float(r["episode_length"])),
                         "buffer_size": int(float(r["buffer_size"])), "fps": float(r["fps"]),
                         "total_time": float(r["total_time"]),
                         **{c: float(by_frame[frame][c]) if frame in by_frame else "" for c in HOOK_COLUMNS}})
    return rows


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def judged(eval_rows: list[dict], task: str, seed: int):
    """verdict.csv's table: each evaluation against the published seeds at its frame, judged as the
    validation runs kept in the repository are (config/recorded.yaml: its published sources and
    reference)."""
    import pandas as pd

    from drm.analysis import recorded, results, validation

    config = recorded.load_config(RECORDED)
    sources = [{**source, "path": str(REPO / source["path"])} for source in config["aggregate"]["published"]]
    # No harness agents: only the published sources are read (the runs folder is never looked at).
    published = results.load(None, [], [task], [], sources, skip_bad=False).tidy
    ours = pd.DataFrame([dict(source=results.HARNESS, agent=AGENT, task=task, seed=seed,
                              frame=r["frame"], episode_reward=r["episode_reward"],
                              dormant_ratio=float("nan")) for r in eval_rows])
    reference = validation.parse_reference(config["validate"]["reference"])
    return validation.verdicts(pd.concat([published, ours], ignore_index=True), reference, [AGENT])


def continued(work: Path, argv: list[str], official_commit: str | None) -> dict | None:
    """None for a new run; for an unfinished one, the settings of its first start, once this start
    is known to continue it (same overrides, same official commit, a snapshot to go on from).
    Anything else is refused in one line, and the folder is kept."""
    if not work.exists():
        return None
    keep = f"or delete {work} to train again from frame 0"
    if not has_snapshot(work / SNAPSHOT) or not (work / "settings.json").is_file():
        raise SystemExit(f"{PROG}: {work} holds an unfinished official run without a snapshot to "
                         f"continue from (one is taken every --snapshot-every frames): {keep}")
    first = json.loads((work / "settings.json").read_text())
    changed = [f"{a} (was {b})" for a, b in zip(argv, first["argv"]) if a != b]
    if changed or len(argv) != len(first["argv"]):
        raise SystemExit(f"{PROG}: {work} holds an official run of other settings: "
                         f"{', '.join(changed) or 'other overrides'}; give its settings to continue it, {keep}")
    if first["official"].get("commit") != official_commit:
        raise SystemExit(f"{PROG}: {work} was started with the official code at "
                         f"{first['official'].get('commit')}, the checkout is at {official_commit}: "
                         f"check that commit out to continue it, {keep}")
    return first


def run_child(argv: list[str], **popen) -> int:
    """Runs the child to its end; its exit status. A SIGTERM to this process (`kill`, a batch
    system's stop) stops the child too, which would otherwise train on beside the next start of
    the same run and write over its snapshot."""
    def stop(signum, frame):
        raise SystemExit(f"{PROG}: stopped (signal {signum}); the same command continues the run "
                         "from its last snapshot")

    before = signal.signal(signal.SIGTERM, stop)
    try:
        return subprocess.run(argv, **popen).returncode  # on SystemExit it kills the child
    finally:
        signal.signal(signal.SIGTERM, before)


def run(args) -> Path:
    """Train with the official code in a child Python (its modules import each other by bare
    name), then write our files. Returns the results folder."""
    out = Path(args.out).resolve()
    if (out / "eval.csv").is_file():
        return out  # done: only the verdict is written again (no checkout needed)
    official = official_dir(args.official)
    work = out / "work"
    argv = overrides(args.task, args.seed, args.frames, args.eval_every, args.device, work.resolve())
    from drm.cell import provenance

    code = dict(official={"dir": str(official), **provenance.git_state(official)},
                harness=provenance.git_state())  # as they are at this start
    first = continued(work, argv, code["official"].get("commit"))
    missing = missing_packages()
    if missing:
        raise SystemExit(f"{PROG}: the official train.py imports packages this Python lacks: "
                         f"pip install {' '.join(missing)}")
    if first is None:
        work.mkdir(parents=True)
        first = dict(argv=argv, **code)
        (work / "settings.json").write_text(json.dumps(first, indent=2) + "\n")
    with open(work / "starts.jsonl", "a") as f:
        f.write(json.dumps(dict(at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                threads=args.threads, snapshot=has_snapshot(work / SNAPSHOT), **code)) + "\n")
    settings = dict(official=str(official), threads=args.threads, hooked=str(work / "lix.csv"),
                    snapshot=str((work / SNAPSHOT).resolve()), snapshot_every=args.snapshot_every,
                    argv=argv)
    path = os.pathsep.join(p for p in (str(official), str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(args.threads)}
    with open(out / "run.log", "a") as log:
        returncode = run_child([sys.executable, "-m", __name__, json.dumps(settings)], cwd=official,
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    if returncode != 0:
        raise SystemExit(f"{PROG}: the official run failed (exit {returncode}); its output is "
                         f"in {out / 'run.log'}, its files in {work}; the same command continues it "
                         "from its last snapshot")
    write_csv(out / "train.csv", official_train(work / "train.csv", work / "lix.csv"),
              ["frame", "step", "episode", "episode_reward", "episode_length", "buffer_size", "fps",
               "total_time", *HOOK_COLUMNS])
    shutil.copy(work / ".hydra" / "config.yaml", out / "official_config.yaml")
    import torch

    torch.set_num_threads(args.threads)  # so that the machine's record states the child's threads
    evals = official_eval(work / "eval.csv")
    starts = [json.loads(line) for line in (work / "starts.jsonl").read_text().splitlines()]
    meta = dict(official=first["official"], harness=first["harness"], command=[PROG, *sys.argv[1:]],
                overrides=argv, task=args.task, seed=args.seed, frames=args.frames,
                threads=args.threads, snapshot_every=args.snapshot_every,
                started=starts[0]["at"], starts=starts,
                seconds=round(evals[-1]["total_time"], 1),  # the official timer, pauses left out
                packages=provenance.versions(), machine=provenance.machine(torch.device(args.device)))
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_csv(out / "eval.csv", evals, EVAL_COLUMNS)  # last: marks done
    shutil.rmtree(work)
    return out


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    out = run(args)
    from drm.analysis import validation

    table = judged(official_eval(out / "eval.csv"), args.task, args.seed)
    table.to_csv(out / "verdict.csv", index=False)
    for row in table.itertuples(index=False):
        head = f"{AGENT} {row.task} seed {row.seed} frame {row.frame}: {row.episode_reward:.1f}; "
        if row.verdict in (validation.INSIDE, validation.BELOW, validation.ABOVE):
            print(head + f"published {row.published_min:.1f}-{row.published_max:.1f}: {row.verdict} "
                         f"(percentile rank {row.percentile_rank:.0f})")
        else:
            print(head + row.verdict)
    print("\n".join(validation.summary_lines(table)))
    return 0


class _Hook:
    """Reads S and the ND score after each update of the official agent; at each episode's end
    (500 agent steps) appends the episode's last S and mean ND to a CSV."""

    def __init__(self, agent, path: Path, target: float):
        self.agent, self.path, self.target, self.nd = agent, path, target, []
        self.update = agent.update
        if not path.exists():  # a continued run appends to its rows (cut back to its snapshot)
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(["frame", *HOOK_COLUMNS])

    def cut(self, frame: int) -> None:
        """Drops the rows a stopped run wrote after the snapshot it continues from."""
        with open(self.path, newline="") as f:
            rows = [r for r in csv.reader(f)]
        with open(self.path, "w", newline="") as f:
            csv.writer(f).writerows([rows[0], *(r for r in rows[1:] if int(r[0]) <= frame)])

    def __call__(self, replay_buffer, step):
        metrics = self.update(replay_buffer, step)
        s = self.agent.encoder.aug.P  # the tied S; only the last layer's LearnS sets its gradient
        if step % self.agent.update_every_steps == 0 and s.grad is not None:
            self.nd.append(self.target - float(s.grad))  # LearnS: grad = target - ND
        if (step + 1) % (EPISODE_FRAMES // ACTION_REPEAT) == 0 and self.nd:
            with open(self.path, "a", newline="") as f:
                csv.writer(f).writerow([(step + 1) * ACTION_REPEAT, sum(self.nd) / len(self.nd),
                                        float(s.detach().clamp(0, 1))])
            self.nd = []
        return metrics


def packed(buffer) -> dict:
    """The official NumPy buffer's attributes, its arrays cut to the slots written so far: they are
    allocated for the whole capacity (1M steps of frames, 21 GB untouched) and filled from 0."""
    import numpy as np

    arrays = {k: v for k, v in vars(buffer).items()
              if isinstance(v, np.ndarray) and v.ndim and len(v) == buffer.buffer_size}
    used = buffer.buffer_size if buffer.full else max(buffer.index, 0)
    return dict(attributes={k: v for k, v in vars(buffer).items() if k not in arrays},
                arrays={k: (v[:used].copy(), v.shape, v.dtype) for k, v in arrays.items()})


def unpacked(state: dict, buffer):
    """`packed` undone into the Workspace's own fresh buffer."""
    import numpy as np

    vars(buffer).update(state["attributes"])
    for name, (used, shape, dtype) in state["arrays"].items():
        array = np.zeros(shape, dtype=dtype)
        array[:len(used)] = used
        setattr(buffer, name, array)
    return buffer


def save(workspace, hook: _Hook, before_reset: dict, path: Path) -> None:
    """Writes what a stopped official run needs to go on as the uninterrupted one: the official
    snapshot's keys (the whole agent, timer, counters) plus what it leaves out. Taken at an
    episode's end, after the official loop reset the environment and added the first observation
    to the buffer, so it keeps the training environment's random state from before that reset."""
    from drm.cell import snapshot

    agent = workspace.agent
    del agent.update  # the hook is not part of the agent's state
    try:
        state = dict(agent=agent, timer=workspace.timer, step=workspace._global_step,
                     _global_episode=workspace._global_episode, replay_buffer=packed(workspace.replay_buffer),
                     rng=snapshot.rng_states(workspace.device), train_env=before_reset,
                     eval_env=workspace.eval_env.task.random.get_state(),
                     nd=list(hook.nd), saved_at=time.time())
        snapshot.save(path, state)  # read back before it replaces the last one, which is kept
    finally:
        agent.update = hook


def has_snapshot(path: Path) -> bool:
    """Whether a run has a snapshot to continue from: `path`, or the one before it."""
    from drm.cell.snapshot import previous

    return path.is_file() or previous(path).is_file()


def load(path: Path) -> dict:
    """The newest readable snapshot, `path` or the one before it (a damaged one is set aside,
    and said so); a run without either stops in one line."""
    from drm.cell.snapshot import load_newest

    state, _, notes = load_newest(path, map_location=None)  # the agent back on its device
    for note in notes:
        print(f"{PROG}: {note}", flush=True)
    if state is None:
        raise SystemExit(f"{PROG}: no readable snapshot to continue from in {path.parent}; "
                         f"delete {path.parent} to train again from frame 0")
    return state


def restore(workspace, state: dict, hook_path: Path, target: float) -> _Hook:
    """Puts a snapshot back into a freshly built Workspace; returns the hook, around the restored
    agent. The official loop starts by resetting the environment and adding the first observation:
    with the random state from before the snapshot's reset it gets the same episode, and the buffer
    (which holds that observation already) skips the one add."""
    from drm.cell.snapshot import set_rng_states

    pause = time.time() - state["saved_at"]
    for key in ("agent", "timer", "_global_episode"):
        setattr(workspace, key, state[key])
    workspace._global_step = state["step"]
    workspace.timer._start_time += pause  # the official timer's times leave the pause out
    workspace.timer._last_time += pause
    set_rng_states(state["rng"], workspace.device)
    workspace.train_env.task.random.set_state(state["train_env"])
    workspace.eval_env.task.random.set_state(state["eval_env"])
    buffer = workspace.replay_buffer = unpacked(state["replay_buffer"], workspace.replay_buffer)

    def add_once_skipped(time_step):
        del buffer.add  # the next add is the buffer's own

    buffer.add = add_once_skipped
    hook = _Hook(workspace.agent, hook_path, target)
    hook.nd = list(state["nd"])
    hook.cut(workspace.global_frame)
    workspace.agent.update = hook
    return hook


def child(settings: dict) -> None:
    """The official train.py's main, as `python train.py <overrides>` runs it, plus the hook."""
    import torch

    torch.set_num_threads(settings["threads"])
    from drm.cell import rendering

    print(rendering.choose_backend(), flush=True)  # before dm_control, which train.py imports
    import dm_control.suite  # noqa: F401  (fixes the backend before train.py sets MUJOCO_GL=egl)

    sys.argv = ["train.py", *settings["argv"]]
    import train

    if Path(train.__file__).resolve().parent != Path(settings["official"]):
        raise SystemExit(f"{PROG}: train.py came from {train.__file__}, not from {settings['official']}")

    class Hooked(train.Workspace):
        """The official Workspace with the hook, and snapshots a run can continue from."""

        def __init__(self, cfg):
            super().__init__(cfg)
            self.target = float(cfg.agent.encoder.aug.param_grad_fn_args[1])
            self.hook = _Hook(self.agent, Path(settings["hooked"]), self.target)
            self.agent.update = self.hook
            reset = self.train_env.reset

            def reset_keeping_the_state_before():
                self.before_reset = self.train_env.task.random.get_state()
                return reset()

            self.train_env.reset = reset_keeping_the_state_before

        def save_snapshot(self):  # the official loop calls it at each episode's end
            if self.global_frame % settings["snapshot_every"] == 0:
                save(self, self.hook, self.before_reset, Path(settings["snapshot"]))

        def load_snapshot(self):  # the official main calls it when work/snapshot.pt exists
            state = load(Path(settings["snapshot"]))
            self.hook = restore(self, state, Path(settings["hooked"]), self.target)
            print(f"continued from the snapshot at frame {self.global_frame}", flush=True)

    # As `python train.py`: Hydra finds cfgs/ beside a __main__ file (imported, it would look for
    # a Python package), and that main takes Workspace from the imported `train`, hooked here.
    train.Workspace = Hooked
    official_snapshot = Path(settings["snapshot"]).parent / "snapshot.pt"  # what the official main resumes from
    if has_snapshot(Path(settings["snapshot"])):
        official_snapshot.touch()  # our load_snapshot reads ours
    runpy.run_path(train.__file__, run_name="__main__")


if __name__ == "__main__":  # the child of `run`: argv is its settings as JSON
    child(json.loads(sys.argv[1]))
