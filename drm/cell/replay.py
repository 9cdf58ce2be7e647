"""Replay that stores every 3x84x84 frame once, in one ring over time steps.

DrQ-v2 stores 9-channel stacks per episode file (63.5 KB a transition); here a frame costs
21,168 B and stacks and n-step returns are rebuilt when sampling. Time steps keep DrQ-v2's
layout: a reset step (dummy action, no reward) starts each episode, and step g+1 holds the
action taken at g and the reward and discount that followed. A transition starts at a time
step g and needs g+n in the same episode; stacks never reach before the episode's first
frame (it is repeated, as the environment's frame stack does). Sampling is uniform over the
valid transitions still in the ring.

`sample_running_episode` says which: False samples only episodes that have ended, as the
official DrQ-v2 and DrM loaders do (an episode reaches their buffer when it finishes); True
also samples the running episode's transitions, as A-LIX's official NumPy buffer does.
"""
import os
from pathlib import Path

import numpy as np

from drm.cell.dmc import TimeStep

FRAME_SHAPE = (3, 84, 84)  # one RGB render: every stored step holds one
MAX_ACTION_DIM = 56  # the widest DMC action space (humanoid_CMU; dog has 38)


class ChunkError(Exception):
    """A snapshot's replay chunks cannot all be read back; the message says which and what was done."""


UNREADABLE = ".unreadable"  # the suffix of a chunk (or snapshot) moved aside because it cannot be read


class ReplayBuffer:
    def __init__(self, capacity: int, frame_shape, action_shape, frame_stack: int, nstep: int,
                 discount: float, seed: int, *, sample_running_episode: bool):
        self.sample_running_episode = sample_running_episode
        self.capacity, self.frame_stack, self.nstep, self.discount = capacity, frame_stack, nstep, discount
        self.frames = np.empty((capacity, *frame_shape), dtype=np.uint8)
        self.actions = np.empty((capacity, *action_shape), dtype=np.float32)
        self.rewards = np.empty(capacity, dtype=np.float32)
        self.discounts = np.empty(capacity, dtype=np.float32)
        self.episode_start = np.empty(capacity, dtype=np.int64)  # global index of the episode's first step
        self.total = 0  # time steps ever added; the next one's global index
        self.finished_total = 0  # steps of the episodes that have ended (the ring only appends)
        self.rng = np.random.default_rng(seed)

    @staticmethod
    def bytes_per_step(frame_shape, action_shape) -> int:
        return int(np.prod(frame_shape)) + 4 * int(np.prod(action_shape)) + 4 + 4 + 8

    @classmethod
    def max_bytes_per_step(cls) -> int:
        """A stored step's bytes on any DMC task (the workflow's memory request per step)."""
        return cls.bytes_per_step(FRAME_SHAPE, (MAX_ACTION_DIM,))

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def add(self, ts: TimeStep) -> None:
        g = self.total
        i = g % self.capacity
        self.frames[i] = ts.frame
        self.actions[i] = ts.action
        self.rewards[i] = ts.reward
        self.discounts[i] = ts.discount
        self.episode_start[i] = g if ts.first else self.episode_start[(g - 1) % self.capacity]
        self.total += 1
        if ts.last:
            self.finished_total = self.total

    def _valid(self, g: np.ndarray, total: int) -> np.ndarray:
        cap, oldest = self.capacity, max(0, total - self.capacity)
        start = self.episode_start[g % cap]
        same_episode = self.episode_start[(g + self.nstep) % cap] == start
        stack_kept = np.maximum(g - self.frame_stack + 1, start) >= oldest
        return same_episode & stack_kept

    def _stack(self, g: np.ndarray, start: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        offsets = np.arange(-self.frame_stack + 1, 1)
        idx = np.maximum(g[:, None] + offsets, start[:, None]) % self.capacity
        if out is None:
            out = np.empty(*self.batch_layout(len(g))[0])
        # mode="clip" (the indices are in range already) lets numpy write into `out` directly.
        np.take(self.frames, idx, axis=0, out=out.reshape(*idx.shape, *self.frames.shape[1:]),
                mode="clip")
        return out

    def batch_layout(self, batch_size: int) -> list[tuple[tuple[int, ...], np.dtype]]:
        """Each array of a batch: its shape and dtype (obs, action, reward, discount, next_obs)."""
        obs = ((batch_size, self.frame_stack * self.frames.shape[1], *self.frames.shape[2:]), self.frames.dtype)
        return [obs, ((batch_size, *self.actions.shape[1:]), self.actions.dtype),
                ((batch_size, 1), self.rewards.dtype), ((batch_size, 1), self.discounts.dtype), obs]

    def sample(self, batch_size: int):
        """(obs, action, n-step reward, gamma^n * env discounts, next_obs) as numpy arrays."""
        return self.sample_from(self.rng, self.view(), batch_size)

    def view(self) -> tuple[int, int]:
        """What a sample depends on besides the generator: (total, finished_total)."""
        return self.total, self.finished_total

    def sample_from(self, rng: np.random.Generator, view: tuple[int, int], batch_size: int,
                    out: tuple[np.ndarray, ...] | None = None):
        """The batch `sample` draws with `rng` when the ring is at `view`, into `out` if given.

        It reads only steps of [oldest, end) at that view, where end is `finished_total`, or
        `total` when the running episode is sampled. So while the ring is at an earlier view
        of the same finished episodes, it can be drawn ahead (drm.cell.batches): the steps
        being added in the meantime overwrite only slots older than `oldest`."""
        total, finished_total = view
        end = total if self.sample_running_episode else finished_total
        low, high = max(0, total - self.capacity), end - self.nstep  # g in [low, high)
        if high <= low:
            raise RuntimeError("replay holds no complete n-step transition yet" + (
                "" if self.sample_running_episode else " of a finished episode"))
        g = rng.integers(low, high, size=batch_size)
        for _ in range(1000):
            bad = ~self._valid(g, total)
            if not bad.any():
                break
            g[bad] = rng.integers(low, high, size=int(bad.sum()))
        else:
            raise RuntimeError("replay holds no valid transition (episodes shorter than nstep?)")
        cap = self.capacity
        start = self.episode_start[g % cap]
        reward = np.zeros(batch_size, dtype=np.float32)
        discount = np.ones(batch_size, dtype=np.float32)
        for k in range(1, self.nstep + 1):
            reward += discount * self.rewards[(g + k) % cap]
            discount *= self.discounts[(g + k) % cap] * self.discount
        obs_out, action_out, reward_out, discount_out, next_out = out or (None,) * 5
        batch = (self._stack(g, start, obs_out), self.actions[(g + 1) % cap], reward[:, None],
                 discount[:, None], self._stack(g + self.nstep, start, next_out))
        if out is None:
            return batch
        for target, value in zip((action_out, reward_out, discount_out), batch[1:4]):
            np.copyto(target, value)
        return out

    # Snapshots: the ring only ever appends, so each snapshot writes just the steps added since
    # the previous one, as an immutable chunk file; a resumed run reads the chunks it needs.
    FIELDS = ("frames", "actions", "rewards", "discounts", "episode_start")

    def save_chunks(self, directory: Path, saved_total: int) -> None:
        """Write the steps [saved_total, total) that are still in the ring."""
        directory.mkdir(parents=True, exist_ok=True)
        oldest = max(0, self.total - self.capacity)
        start = max(saved_total, oldest)
        if start < self.total:
            idx = np.arange(start, self.total) % self.capacity
            tmp = directory / f"{start:012d}-{self.total:012d}.tmp.npz"
            np.savez(tmp, **{k: getattr(self, k)[idx] for k in self.FIELDS})
            os.replace(tmp, directory / tmp.name.replace(".tmp", ""))

    def prune_chunks(self, directory: Path, total: int | None = None) -> None:
        """Drop chunks that had fallen out of the ring when `total` steps had been added (default:
        now); pass the oldest kept snapshot's total so that it still finds every chunk it needs."""
        total = self.total if total is None else total
        for path, (_, end) in self._chunks(directory):
            if end <= max(0, total - self.capacity):
                path.unlink()

    def discard_chunks_from(self, directory: Path, total: int) -> None:
        """Drop chunks that start at or after `total`: written for a snapshot that never completed."""
        for path, (start, _) in self._chunks(directory):
            if start >= total:
                path.unlink()

    def load_chunks(self, directory: Path, total: int, finished_total: int) -> None:
        """Refill the ring as it was when `total` steps had been added, `finished_total` of
        them in episodes that had ended. ChunkError when a chunk it needs is missing or cannot
        be read (that one is moved aside to `<name>.unreadable`); the ring is then empty."""
        oldest = max(0, total - self.capacity)
        self.discard_chunks_from(directory, total)
        needed = [(path, span) for path, span in self._chunks(directory) if span[1] > oldest]
        covered = oldest  # the chunks must hold every step of [oldest, total), in order
        for path, (start, end) in needed + [(None, (total, total))]:
            if start > covered:
                self.total = self.finished_total = 0
                raise ChunkError(f"replay steps {covered}-{start} have no chunk in {directory}")
            covered = max(covered, end)
        for path, (start, end) in needed:
            try:
                with np.load(path) as chunk:
                    arrays = {k: chunk[k] for k in self.FIELDS}
                lengths = {len(a) for a in arrays.values()}
                if lengths != {end - start}:
                    raise ValueError(f"holds {sorted(lengths)} steps for the {end - start} of its name")
            except Exception as err:  # whatever a truncated or garbled file makes numpy raise
                bad = path.with_name(path.name + UNREADABLE)
                os.replace(path, bad)
                self.total = self.finished_total = 0
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
                raise ChunkError(f"replay chunk {path} cannot be read ({reason}); moved to {bad.name}") from None
            steps = np.arange(start, end)
            keep = (steps >= oldest) & (steps < total)
            for k in self.FIELDS:
                getattr(self, k)[steps[keep] % self.capacity] = arrays[k][keep]
        self.total, self.finished_total = total, finished_total

    @staticmethod
    def _chunks(directory: Path):
        for path in sorted(directory.glob("*-*.npz")):
            if ".tmp" not in path.name:
                start, end = path.stem.split("-")
                yield path, (int(start), int(end))
