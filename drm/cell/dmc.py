"""The DeepMind Control Suite from pixels, as DrQ-v2's `dmc.py` builds it.

Action repeat (rewards summed, discounts multiplied), actions rescaled from [-1, 1], one
84x84 RGB render per agent step (camera 2 for quadruped, else 0), the last `frame_stack`
frames stacked on the channel axis (the first frame repeated after a reset). dm_control is
imported lazily, after `drm.cell.rendering` has chosen MUJOCO_GL.
"""
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ALIASES = {"cup": "ball_in_cup"}


@lru_cache(maxsize=None)
def task_names() -> dict[str, tuple[str, str]]:
    """Every Control Suite task as `domain_task` -> (domain, task), plus the `cup_*` aliases."""
    from dm_control import suite

    names = {f"{domain}_{task}": (domain, task) for domain, task in suite.ALL_TASKS}
    for alias, domain in ALIASES.items():
        names.update({f"{alias}_{task}": (domain, task) for d, task in suite.ALL_TASKS if d == domain})
    return names


def check_task(name: str) -> None:
    """Refuse a task the Control Suite lacks. A task drm/cfg/tasks.yaml configures passes
    without importing dm_control (about 0.6 s, the largest part of checking a grid)."""
    from drm.cell.presets import configured_tasks

    if name not in configured_tasks():
        parse_task(name)


def parse_task(name: str) -> tuple[str, str]:
    names = task_names()
    if name not in names:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(names))}")
    return names[name]


@dataclass
class TimeStep:
    observation: np.ndarray  # uint8 (3 * frame_stack, H, W)
    frame: np.ndarray  # uint8 (3, H, W): the newest frame alone, for the replay buffer
    action: np.ndarray  # the action that led here (zeros after a reset)
    reward: float
    discount: float
    first: bool
    last: bool


class PixelEnv:
    """One DMC task from pixels; `reset`/`step` return TimeSteps; RNG state can be saved."""

    def __init__(self, name: str, seed: int, action_repeat: int = 2, frame_stack: int = 3,
                 size: int = 84, episode_frames: int = 1000):
        from dm_control import suite

        domain, task = parse_task(name)
        self._env = suite.load(domain, task, task_kwargs={"random": seed},
                               visualize_reward=False)
        self._camera = 2 if domain == "quadruped" else 0
        self._repeat, self._size = action_repeat, size
        self._max_steps = episode_frames // action_repeat
        self._frames: deque[np.ndarray] = deque(maxlen=frame_stack)
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float32), spec.maximum.astype(np.float32)
        self.action_shape = spec.shape
        self.obs_shape = (3 * frame_stack, size, size)
        self._steps = 0

    def _render(self) -> np.ndarray:
        pixels = self._env.physics.render(self._size, self._size, camera_id=self._camera)
        return pixels.transpose(2, 0, 1).copy()

    def render_rgb(self, size: int) -> np.ndarray:
        """The scene now, (size, size, 3) RGB, from the agent's camera (a video's frame); the
        physics and the task's RNG are untouched."""
        return self._env.physics.render(size, size, camera_id=self._camera)

    def _time_step(self, action, reward, discount, first, last) -> TimeStep:
        frame = self._render()
        if first:
            self._frames.extend([frame] * self._frames.maxlen)
        else:
            self._frames.append(frame)
        return TimeStep(np.concatenate(self._frames, axis=0), frame, action,
                        reward, discount, first, last)

    def reset(self) -> TimeStep:
        self._env.reset()
        self._steps = 0
        return self._time_step(np.zeros(self.action_shape, np.float32), 0.0, 1.0, True, False)

    def step(self, action: np.ndarray) -> TimeStep:
        action = np.asarray(action, dtype=np.float32)
        scaled = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
        reward, discount = 0.0, 1.0
        for _ in range(self._repeat):
            ts = self._env.step(scaled)
            reward += float(ts.reward or 0.0)
            discount *= float(ts.discount)
            if ts.last():
                break
        self._steps += 1
        # A shortened episode ends like DMC's own time limit: discount 1 (bootstrapped).
        last = ts.last() or self._steps >= self._max_steps
        return self._time_step(action, reward, discount, False, last)

    def get_rng_state(self):
        return self._env.task.random.get_state()

    def set_rng_state(self, state) -> None:
        self._env.task.random.set_state(state)
