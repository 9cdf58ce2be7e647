"""One training cell: `python -m drm.train agent=<drqv2|drm|alix> task=<task> seed=<int> out_dir=<dir>`.

DrQ-v2's training loop (docs/agents.md §1.7), made resumable. While it runs, the growing CSVs, the
snapshot and nothing else live in `<out_dir>/work/`; when it ends, `eval.csv`, `train.csv` and
`meta.json` are published into `<out_dir>` and `work/` is removed. Filmed evaluations
(`videos/<frame>.mp4`) and TensorBoard event files go straight into `<out_dir>`, to be watched as
the cell trains; a resumption cuts them back to its snapshot too. Killed at any moment and
started again with the same command, it continues from the last snapshot (taken between
episodes, before the environment's reset) and ends with the files an uninterrupted run writes.
A command that cannot run is refused in one line (`drm.train: error: ...`, status 2) before the
environments and the agent are built.
"""
import contextlib
import errno
import json
import os
import shutil
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from drm.cell.allocator import restart_with_allocator_env

if __name__ == "__main__":
    restart_with_allocator_env("drm.train")

import hydra  # noqa: E402
import hydra.errors  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from drm.cell import config, provenance, rendering, snapshot, video  # noqa: E402
from drm.cell.csvlog import CsvLog  # noqa: E402
from drm.cell.loggers import Loggers  # noqa: E402
from drm.dormant import dormant_ratio  # noqa: E402

from drm.layout import EVAL_COLUMNS, TRAIN_COLUMNS  # noqa: E402


# Keys of the agent's config that the loop reads; the rest are the agent's constructor's.
LOOP_KEYS = ("name", "replay_sample_running_episode")


class RunRefused(Exception):
    """The out_dir holds a run this command must not touch, or cannot be written."""


class CellStopped(Exception):
    """The cell could not go on (a full disk); the message says what is intact on disk."""


def choose_threads(threads: int | None) -> tuple[int, str]:
    """torch's CPU thread count and where it came from: threads=N, else OMP_NUM_THREADS, else 1.
    torch's own default (every core) oversubscribes a shared machine: 1.6 frames/s against 8.1
    with one thread, measured on a busy 2-core machine."""
    if threads is not None:
        return threads, f"threads={threads}"
    user_value = os.environ.get("OMP_NUM_THREADS", "")
    if user_value:
        if not (user_value.isdigit() and int(user_value) >= 1):
            raise ValueError(f"OMP_NUM_THREADS={user_value!r} is invalid: must be an integer >= 1")
        return int(user_value), f"OMP_NUM_THREADS={user_value}"
    return 1, "the default; threads=N for more"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but torch sees no CUDA device; use device=cpu or auto")
    device = torch.device(name)  # config.check_device has refused names torch cannot parse
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"device={name!r} but torch sees {count} CUDA device(s) here: use device=cuda"
                         f"{f' or cuda:0..cuda:{count - 1}' if count > 1 else ' or cuda:0'}")
    return device


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# The float32 precision of GPU matmuls and cuDNN convolutions, in torch's fp32_precision API.
# false: the official codes' settings, written out rather than left to torch's defaults: cuDNN
# convolutions (and RNNs, so the two cuDNN flags agree) in TF32 on Ampere and later, matmuls in
# full FP32 (torch's default since 1.12, the DrM repo's torch 1.12.1). true: IEEE FP32 for all.
# (After `true`, torch refuses to read its legacy `cudnn.allow_tf32`: read the new flags.)
FP32_PRECISION = {
    False: {"matmul": "ieee", "cudnn_conv": "tf32", "cudnn_rnn": "tf32"},
    True: {"matmul": "ieee", "cudnn_conv": "ieee", "cudnn_rnn": "ieee"},
}


def configure_determinism(deterministic: bool) -> None:
    """GPU determinism (config key `deterministic`). True: torch's deterministic algorithms
    (an op without one raises), cuDNN deterministic without benchmarking, float32 matmuls and
    convolutions in full precision (no TF32), and cuBLAS's fixed workspace (CUBLAS_WORKSPACE_CONFIG,
    kept if the user set it). False: the official codes' settings, cuDNN benchmarking on, TF32
    convolutions, FP32 matmuls. Every flag is set either way, so a process that configures
    twice ends as the last call says. On the CPU both give the same, deterministic, numbers."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    precision = FP32_PRECISION[bool(deterministic)]
    torch.backends.cuda.matmul.fp32_precision = precision["matmul"]
    torch.backends.cudnn.conv.fp32_precision = precision["cudnn_conv"]
    torch.backends.cudnn.rnn.fp32_precision = precision["cudnn_rnn"]
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def check_determinism_possible(agent_class, device: torch.device, deterministic: bool) -> None:
    """Refuse deterministic=true on CUDA for an agent that needs an op torch can only run
    nondeterministically there (it would raise at the first update, after the seed frames)."""
    ops = agent_class.NONDETERMINISTIC_CUDA_OPS  # baselines.utils.Agent: the agent contract
    if deterministic and device.type == "cuda" and ops:
        raise ValueError(
            f"deterministic=true on {device}: {agent_class.__name__} needs {', '.join(ops)}, which "
            "torch runs on CUDA only nondeterministically; use deterministic=false or device=cpu")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class TrainingRun:
    def __init__(self, cfg: DictConfig):
        """Everything that can refuse the command cheaply; `build` does the expensive rest."""
        config.check_device(cfg.device)
        self.device = pick_device(str(cfg.device))
        self.rendering = rendering.choose(  # before anything imports dm_control; EGL on this GPU
            rendering.CudaDevice.of(self.device) if self.device.type == "cuda" else None)
        self.cfg = config.resolve(cfg)
        self.out = Path(cfg.out_dir)
        self.work = self.out / "work"
        self.snapshot_path = self.work / "snapshot.pt"
        self.threads, self.threads_reason = choose_threads(cfg.threads)
        torch.set_num_threads(self.threads)
        check_determinism_possible(hydra.utils.get_class(cfg.agent._target_), self.device, cfg.deterministic)
        configure_determinism(cfg.deterministic)
        self.repeat = cfg.action_repeat

        self.step = self.episode = 0
        self.last_snapshot_frame = 0
        self.snapshot_frame = None  # the frame of the newest intact snapshot on disk, if any
        self.last_eval_step = -1
        self.last_eval = float("nan")
        self.elapsed_before = 0.0
        self.saved_total = 0  # replay steps already in snapshot chunks
        progress = str(cfg.progress)
        self.show_progress = sys.stderr.isatty() if progress == "auto" else progress == "True"
        self.session_start, self.session_first_frame = time.time(), 0
        # Built by `build` once out_dir is claimed; the logs gain the agent's columns there.
        self.train_env = self.eval_env = self.agent = self.replay = self.batches = None
        self.agent_columns = []
        self.eval_log = CsvLog(self.work / "eval.csv", EVAL_COLUMNS)
        self.train_log = CsvLog(self.work / "train.csv", TRAIN_COLUMNS)
        # Watching the run: videos of chosen evaluations, the curves in TensorBoard / W&B.
        self.videos = video.Videos(self.out, video.filmed(self.cfg), self.warn)
        self.loggers = Loggers(self.cfg, self.out, self.work, {"eval": self.eval_log, "train": self.train_log})

    def build(self) -> None:
        """The environments, the agent and the replay: only once out_dir is known to be usable."""
        cfg = self.cfg
        from drm.cell.batches import BatchPrefetcher
        from drm.cell.dmc import PixelEnv
        from drm.cell.replay import FRAME_SHAPE, ReplayBuffer

        seed_everything(cfg.seed)
        env_args = dict(action_repeat=cfg.action_repeat, frame_stack=cfg.frame_stack,
                        episode_frames=cfg.episode_frames)
        self.train_env = PixelEnv(cfg.task, cfg.seed, **env_args)
        self.eval_env = PixelEnv(cfg.task, cfg.seed, **env_args)
        agent_cfg = OmegaConf.to_container(cfg.agent, resolve=True)
        for key in LOOP_KEYS:
            agent_cfg.pop(key)
        self.agent = hydra.utils.instantiate(
            agent_cfg, obs_shape=self.train_env.obs_shape, action_shape=self.train_env.action_shape,
            device=str(self.device), dormant_ratio_fn=dormant_ratio)
        self.replay = ReplayBuffer(cfg.replay_buffer_size, FRAME_SHAPE, self.train_env.action_shape,
                                   cfg.frame_stack, cfg.nstep, cfg.discount, seed=cfg.seed,
                                   sample_running_episode=cfg.agent.replay_sample_running_episode)
        self.batches = BatchPrefetcher(self.replay, cfg.batch_size, self.device, enabled=cfg.prefetch_batches)
        self.agent_columns = list(self.agent.log_columns())
        self.train_log.columns += [c for c in self.agent_columns if c not in TRAIN_COLUMNS]

    def _require_built(self, what: str) -> None:
        if self.agent is None:
            raise RuntimeError(f"TrainingRun.{what} needs the agent and the replay: call build() first")

    # ---------------------------------------------------------------- out_dir bookkeeping
    def claim_out_dir(self) -> bool:
        """Check what out_dir holds; returns False when this exact run has already finished."""
        saved = self.out / "config.yaml"
        finished = (self.out / "meta.json").exists()
        if (finished or self.work.exists()) and saved.exists():
            diffs = config.differences(config.comparable(yaml.safe_load(saved.read_text())),
                                       config.comparable(self.cfg))
            if diffs:
                raise RunRefused(
                    f"{self.out} holds a {'finished' if finished else 'started'} run with a different "
                    "config; refusing to mix them. Differences:\n  " + "\n  ".join(diffs) +
                    "\nUse another out_dir, or delete that run first.")
        elif self.work.exists() and any(self.work.iterdir()):
            raise RunRefused(f"{self.work} exists but {saved} does not; not a run of this harness")
        if finished:
            return False
        try:
            self.work.mkdir(parents=True, exist_ok=True)
            _write_atomic(saved, OmegaConf.to_yaml(self.cfg))
            with open(self.starts_path, "a") as f:  # counted before anything can fail
                f.write(json.dumps({"started_at": datetime.now(timezone.utc).isoformat(),
                                    "hostname": socket.gethostname(), "pid": os.getpid(),
                                    **snapshot.compute_settings(self.device)}) + "\n")
        except OSError as err:
            raise RunRefused(f"out_dir {self.out} is not writable: {err.strerror} "
                             f"({err.filename or self.out})") from None
        return True

    @property
    def starts_path(self) -> Path:
        """One JSON line per start of this run, written as it starts (meta.json's `starts`)."""
        return self.work / "starts.jsonl"

    def starts(self) -> list[dict]:
        return [json.loads(line) for line in self.starts_path.read_text().splitlines() if line]

    def log(self, line: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with open(self.out / "train.log", "a") as f:
            f.write(f"{stamp} {line}\n")
        if not self.show_progress:
            print(line, file=sys.stderr, flush=True)

    def warn(self, line: str) -> None:
        """A line the user must see even under the progress line."""
        if self.show_progress:
            print(f"\ndrm.train: warning: {line}", file=sys.stderr, flush=True)
        self.log(f"warning: {line}")

    # ---------------------------------------------------------------- snapshots
    def save_snapshot(self) -> None:
        """Replay chunks first, then the state that names how many steps they hold. The snapshot
        being replaced is kept as the fallback, so chunks are pruned only once it no longer needs
        them either."""
        self._require_built("save_snapshot")
        fallback_total = self.saved_total
        self.replay.save_chunks(self.work / "replay", self.saved_total)
        snapshot.save(self.snapshot_path, {
            "step": self.step, "episode": self.episode,
            "last_snapshot_frame": self.step * self.repeat, "last_eval_step": self.last_eval_step,
            "elapsed": self.elapsed(), "compute": snapshot.compute_settings(self.device),
            "agent": self.agent.state_dict(),
            "replay_total": self.replay.total, "replay_finished_total": self.replay.finished_total,
            "replay_rng": self.replay.rng.bit_generator.state,
            "rng": snapshot.rng_states(self.device),
            "train_env_rng": self.train_env.get_rng_state(),
            "eval_env_rng": self.eval_env.get_rng_state(),
            "eval_rows": self.eval_log.rows, "train_rows": self.train_log.rows,
            "loggers": self.loggers.state(),
        })
        self.last_snapshot_frame = self.snapshot_frame = self.step * self.repeat
        self.saved_total = self.replay.total
        self.replay.prune_chunks(self.work / "replay", fallback_total)

    def restore(self) -> None:
        """Resumes from the newest snapshot that can be read and whose replay chunks can all be
        read, else starts from frame 0; a file passed over is set aside (`*.unreadable`) and the
        warning says, in one line, what was passed over and where the run goes on from."""
        self._require_built("restore")
        from drm.cell.replay import UNREADABLE, ChunkError

        state, used, unreadable = snapshot.load_newest(self.snapshot_path)
        while state is not None:
            try:
                self.replay.load_chunks(self.work / "replay", state["replay_total"],
                                        state["replay_finished_total"])
                break
            except ChunkError as err:
                moved = snapshot.set_aside(used)
                unreadable.append(f"{err}, so {used.name} is set aside as {moved.name}")
                state, used, more = snapshot.load_newest(self.snapshot_path)
                unreadable += more
        self.resume_watching(state)
        if state is None:
            if unreadable:
                self.warn("; ".join(unreadable) + "; no readable snapshot is left, so the run "
                          "starts again from frame 0")
            self.eval_log.truncate(0)
            self.train_log.truncate(0)
            for path in (self.work / "replay").glob("*"):  # what was set aside stays, to be looked at
                if not path.name.endswith(UNREADABLE):
                    path.unlink()
            return
        self.step, self.episode = state["step"], state["episode"]
        self.last_snapshot_frame, self.last_eval_step = state["last_snapshot_frame"], state["last_eval_step"]
        self.snapshot_frame = self.last_snapshot_frame
        self.elapsed_before = state["elapsed"]
        self.agent.load_state_dict(state["agent"])
        self.replay.rng.bit_generator.state = state["replay_rng"]
        self.saved_total = state["replay_total"]
        snapshot.set_rng_states(state["rng"], self.device)
        self.train_env.set_rng_state(state["train_env_rng"])
        self.eval_env.set_rng_state(state["eval_env_rng"])
        self.eval_log.truncate(state["eval_rows"])
        self.train_log.truncate(state["train_rows"])
        frame = self.step * self.repeat
        if unreadable:
            self.warn("; ".join(unreadable) + f"; resumed from {used.name} at frame {frame}")
        else:
            self.log(f"resumed from the snapshot at frame {frame}")
        changes = snapshot.settings_changes(state.get("compute", {}),
                                            snapshot.compute_settings(self.device))
        if changes:
            self.warn(f"resuming with {', '.join(changes)}: from frame {frame} on, the run no "
                      "longer matches an uninterrupted one bit for bit")

    def resume_watching(self, state: dict | None) -> None:
        """Videos and loggers cut back to what the snapshot knew (to nothing without one)."""
        self.videos.keep_until(None if state is None else state["last_eval_step"] * self.repeat)
        self.loggers.start(None if state is None else state.get("loggers"))

    # ---------------------------------------------------------------- the loop
    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.session_start

    def film(self) -> None:
        if self.videos.recording is not None:
            self.videos.add(self.eval_env.render_rgb(video.RENDER_SIZE))

    def evaluate(self) -> None:
        returns, steps = [], 0
        self.videos.start(self.step * self.repeat)  # its first episode, if this evaluation is filmed
        for _ in range(self.cfg.num_eval_episodes):
            ts, total = self.eval_env.reset(), 0.0
            self.film()
            while not ts.last:
                ts = self.eval_env.step(self.agent.act(ts.observation, self.step, eval_mode=True))
                self.film()
                total += ts.reward
                steps += 1
            returns.append(total)
            if (filmed := self.videos.finish()) is not None:
                self.log(f"video {filmed.path.name}: {filmed.bytes} bytes")
        self.last_eval_step = self.step
        self.last_eval = float(np.mean(returns))
        row = {"frame": self.step * self.repeat, "step": self.step, "episode": self.episode,
               "episode_reward": self.last_eval,
               "episode_length": steps * self.repeat / len(returns), "total_time": self.elapsed()}
        self.eval_log.write(row)
        self.loggers.write("eval", row)
        self.log(f"eval frame={self.step * self.repeat} episode_reward={self.last_eval:.2f}")

    def end_episode(self, reward: float, length: int, metrics: dict, started: float) -> None:
        self.episode += 1
        row = {"frame": self.step * self.repeat, "step": self.step, "episode": self.episode,
               "episode_reward": reward, "episode_length": length * self.repeat,
               "buffer_size": len(self.replay), "fps": length * self.repeat / (time.time() - started),
               "total_time": self.elapsed(), **self.agent.log_state()}
        row.update({k: float(np.mean(v)) for k, v in metrics.items()})
        self.train_log.write(row)
        self.loggers.write("train", row)
        self.log(f"episode {self.episode} frame={row['frame']} episode_reward={reward:.2f} "
                 f"fps={row['fps']:.1f}")

    def progress(self) -> None:
        if not self.show_progress:
            return
        frame, total = self.step * self.repeat, self.cfg.num_train_frames
        session_frames = frame - self.session_first_frame
        fps = session_frames / max(time.time() - self.session_start, 1e-9)
        eta = (total - frame) / fps if fps > 0 else float("nan")
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if np.isfinite(eta) else "--:--:--"
        print(f"\r{self.cfg.agent.name} {self.cfg.task} seed {self.cfg.seed}: frame {frame}/{total} "
              f"| {fps:.0f} fps | last eval {self.last_eval:.1f} | ETA {eta_text}   ",
              end="", file=sys.stderr, flush=True)

    def run(self) -> None:
        out_existed, work_existed = self.out.exists(), self.work.exists()
        if not self.claim_out_dir():
            print(f"{self.out}: this run has already finished; nothing to do", file=sys.stderr)
            return
        try:
            self.build()
        except Exception:  # e.g. an agent refusing its config: a refused start leaves nothing
            if not work_existed:
                shutil.rmtree(self.work, ignore_errors=True)
                (self.out / "config.yaml").unlink(missing_ok=True)
                if not out_existed:
                    with contextlib.suppress(OSError):  # only if nothing else was put there
                        self.out.rmdir()
            raise
        try:
            try:
                self.train()
            finally:
                self.batches.close()
                self.loggers.close()
            self.publish()
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self.remove_partial_files()
            kept = (f"its last snapshot at frame {self.snapshot_frame} is intact"
                    if self.snapshot_frame is not None else "it has no snapshot yet: a restart begins at frame 0")
            raise CellStopped(f"no space left on {self.out}: the cell stopped at frame "
                              f"{self.step * self.repeat}; {kept}") from None

    def remove_partial_files(self) -> None:
        """Temp files a failed write left behind (every write here goes through a `*.tmp*` name)."""
        for directory in (self.out, self.work, self.work / "replay", self.videos.folder):
            for path in directory.glob("*.tmp*"):
                path.unlink(missing_ok=True)
        self.replay.discard_chunks_from(self.work / "replay", self.saved_total)

    def train(self) -> None:
        cfg = self.cfg
        self.session_start = time.time()
        self.restore()
        self.session_first_frame = self.step * self.repeat
        self.log(f"start {cfg.agent.name} {cfg.task} seed={cfg.seed} device={self.device} "
                 f"torch threads={self.threads} ({self.threads_reason}) {self.rendering} "
                 f"frame={self.step * self.repeat}/{cfg.num_train_frames}")
        for line in self.rendering.warnings:
            self.warn(line)

        train_steps = cfg.num_train_frames // self.repeat
        seed_steps = cfg.num_seed_frames // self.repeat
        eval_every = max(cfg.eval_every_frames // self.repeat, 1)
        ts = None
        while self.step < train_steps:
            if ts is None or ts.last:
                if ts is not None:
                    self.end_episode(ep_reward, ep_length, metrics, ep_started)
                    if self.step * self.repeat - self.last_snapshot_frame >= cfg.snapshot_every_frames:
                        self.save_snapshot()
                    self.progress()
                ts = self.train_env.reset()
                self.replay.add(ts)
                ep_reward, ep_length, metrics, ep_started = 0.0, 0, {}, time.time()
            if self.step % eval_every == 0 and self.last_eval_step != self.step:
                self.evaluate()
                self.progress()
            action = self.agent.act(ts.observation, self.step, eval_mode=False)
            if self.step >= seed_steps and self.step % cfg.update_every_steps == 0:
                batch = self.batches.next(adds_before_next=cfg.update_every_steps)
                for key, value in self.agent.update(batch, self.step).items():
                    metrics.setdefault(key, []).append(value)
            ts = self.train_env.step(action)
            self.replay.add(ts)
            ep_reward += ts.reward
            ep_length += 1
            self.step += 1
        if ts is not None and ts.last:  # the last episode ended with the budget: log it too
            self.end_episode(ep_reward, ep_length, metrics, ep_started)
        if self.last_eval_step != self.step:
            self.evaluate()  # every run ends with its score at the final frame
        if self.show_progress:
            print(file=sys.stderr)

    def publish(self) -> None:
        for name in ("eval.csv", "train.csv"):
            tmp = self.out / f"{name}.tmp"
            shutil.copyfile(self.work / name, tmp)
            os.replace(tmp, self.out / name)
        starts = self.starts()
        meta = {
            "agent": self.cfg.agent.name, "task": self.cfg.task, "seed": self.cfg.seed,
            "frames": self.step * self.repeat, "final_eval_return": self.last_eval,
            "started_at": starts[0]["started_at"], "finished_at": datetime.now(timezone.utc).isoformat(),
            "wall_seconds": self.elapsed(), "starts": len(starts),
            "rendering": self.rendering.record(), "command": sys.argv,
            "git": provenance.git_state(), "packages": provenance.versions(),
            "machine": provenance.machine(self.device), "determinism": provenance.determinism(),
            "batches": self.batches.summary(),  # the batch pipeline, this start only
        }
        _write_atomic(self.out / "meta.json", json.dumps(meta, indent=2, default=str))
        shutil.rmtree(self.work)
        self.log(f"finished: {meta['frames']} frames, final eval {self.last_eval:.2f}")


def fail(err) -> None:
    print(f"drm.train: error: {err}", file=sys.stderr)
    sys.exit(2)


@hydra.main(config_path=str(config.CFG_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        if OmegaConf.is_missing(cfg, "out_dir") or not str(cfg.out_dir).strip():
            raise ValueError("out_dir is missing: give out_dir=<dir>, the directory the cell writes "
                             "into (e.g. out_dir=results/runs/drqv2/cartpole_balance/seed1)")
        TrainingRun(cfg).run()
    except (ValueError, RunRefused, CellStopped, rendering.RenderingUnavailable,
            hydra.errors.InstantiationException) as err:
        if isinstance(err, hydra.errors.InstantiationException):  # an agent refused its config
            if not isinstance(err.__cause__, ValueError):
                raise
            err = err.__cause__
        fail(err)


def cli() -> None:
    """`python -m drm.train`: the command line is checked before Hydra reads it (config.py)."""
    try:
        sys.argv[1:] = config.check_command_line(sys.argv[1:])
    except ValueError as err:
        fail(err)
    main()


if __name__ == "__main__":
    cli()
