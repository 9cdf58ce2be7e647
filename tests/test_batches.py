"""Batches drawn ahead in a thread (drm.cell.batches) are the serial path's, bit for bit."""
import numpy as np
import pytest
import torch

from drm.cell.batches import BatchPrefetcher
from drm.cell.dmc import TimeStep
from drm.cell.replay import ReplayBuffer

EPISODE, UPDATE_EVERY, SEED_STEPS, BATCH = 25, 2, 30, 8


def time_step(t: int, rng: np.random.Generator) -> TimeStep:
    """Step t of an endless stream of EPISODE-step episodes, a reset step before each."""
    k = t % (EPISODE + 1)
    return TimeStep(observation=None, frame=rng.integers(0, 256, (3, 6, 6), dtype=np.uint8),
                    action=rng.uniform(-1, 1, 2).astype(np.float32) if k else np.zeros(2, np.float32),
                    reward=float(rng.uniform()) if k else 0.0, discount=float(rng.choice([1.0, 0.5])) if k else 1.0,
                    first=k == 0, last=k == EPISODE)


def new_replay(capacity: int, running: bool = False) -> ReplayBuffer:
    return ReplayBuffer(capacity, (3, 6, 6), (2,), frame_stack=3, nstep=3, discount=0.99, seed=7,
                        sample_running_episode=running)


def drive(replay, next_batch, steps: range, env_rng) -> list:
    """The training loop's order: at an update step the batch is taken before the step's
    transition is added; an episode's end is followed by its reset step."""
    batches = []
    for t in steps:
        if t >= SEED_STEPS and t % UPDATE_EVERY == 0:
            batches.append([x.numpy().copy() for x in next_batch()])
        replay.add(time_step(t, env_rng))
    return batches


def serial_run(capacity: int, steps: int, running: bool = False):
    replay, env_rng = new_replay(capacity, running), np.random.default_rng(3)
    batches = drive(replay, lambda: tuple(torch.from_numpy(x) for x in replay.sample(BATCH)),
                    range(steps), env_rng)
    return batches, replay.rng.bit_generator.state


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(p, q)) for p, q in zip(a, b))


@pytest.mark.parametrize("capacity", [10_000, 60])  # 60: the ring wraps while batches are drawn ahead
def test_batches_drawn_ahead_equal_the_serial_ones(capacity):
    serial, serial_rng = serial_run(capacity, 400)
    replay, env_rng = new_replay(capacity), np.random.default_rng(3)
    prefetcher = BatchPrefetcher(replay, BATCH, torch.device("cpu"))
    ahead = drive(replay, lambda: prefetcher.next(UPDATE_EVERY), range(400), env_rng)
    prefetcher.close()
    assert same(ahead, serial)
    assert replay.rng.bit_generator.state == serial_rng, "the generator ends where the serial one does"
    # Most batches come from the thread; one at each episode end is drawn again serially.
    assert prefetcher.drawn_ahead > 0.8 * len(serial)
    assert prefetcher.drawn_serially >= 400 // (EPISODE + 1) - 2


def test_batches_drawn_ahead_equal_the_serial_ones_across_a_snapshot_and_resume(tmp_path):
    """Killed after step 200 (a snapshot's replay chunks and generator), resumed in a new
    replay and prefetcher: the batches are still the uninterrupted serial run's."""
    serial, serial_rng = serial_run(10_000, 400)
    replay, env_rng = new_replay(10_000), np.random.default_rng(3)
    prefetcher = BatchPrefetcher(replay, BATCH, torch.device("cpu"))
    before = drive(replay, lambda: prefetcher.next(UPDATE_EVERY), range(200), env_rng)
    replay.save_chunks(tmp_path, 0)
    saved = replay.view(), replay.rng.bit_generator.state, env_rng.bit_generator.state
    prefetcher.close()  # the process dies with a batch drawn ahead; it is never used

    resumed = new_replay(10_000)
    resumed.load_chunks(tmp_path, *saved[0])
    resumed.rng.bit_generator.state = saved[1]
    env_rng = np.random.default_rng(0)
    env_rng.bit_generator.state = saved[2]
    prefetcher = BatchPrefetcher(resumed, BATCH, torch.device("cpu"))
    after = drive(resumed, lambda: prefetcher.next(UPDATE_EVERY), range(200, 400), env_rng)
    prefetcher.close()
    assert same(before + after, serial)
    assert resumed.rng.bit_generator.state == serial_rng


def test_running_episode_sampling_is_drawn_serially_and_stays_exact():
    """A-LIX samples the running episode: its next view needs steps not added yet."""
    serial, _ = serial_run(10_000, 200, running=True)
    replay, env_rng = new_replay(10_000, running=True), np.random.default_rng(3)
    prefetcher = BatchPrefetcher(replay, BATCH, torch.device("cpu"))
    batches = drive(replay, lambda: prefetcher.next(UPDATE_EVERY), range(200), env_rng)
    prefetcher.close()
    assert same(batches, serial)
    assert prefetcher.drawn_ahead == 0 and prefetcher.drawn_serially == len(serial)


def test_a_wrong_guess_is_dropped_and_drawn_serially():
    """A loop that adds more steps than it announced (the view did not come true)."""
    replay, env_rng = new_replay(10_000), np.random.default_rng(3)
    for t in range(SEED_STEPS):
        replay.add(time_step(t, env_rng))
    prefetcher = BatchPrefetcher(replay, BATCH, torch.device("cpu"))
    prefetcher.next(adds_before_next=1)
    state_after_first = replay.rng.bit_generator.state
    for t in range(SEED_STEPS, SEED_STEPS + 2):  # two adds where one was announced
        replay.add(time_step(t, env_rng))
    expected_rng = np.random.default_rng(0)
    expected_rng.bit_generator.state = state_after_first
    expected = replay.sample_from(expected_rng, replay.view(), BATCH)
    got = prefetcher.next(adds_before_next=2)
    prefetcher.close()
    assert prefetcher.drawn_ahead == 0 and prefetcher.drawn_serially == 2
    assert all(np.array_equal(x.numpy(), y) for x, y in zip(got, expected))
    assert replay.rng.bit_generator.state == expected_rng.bit_generator.state


def test_sampling_into_buffers_gives_the_same_batch():
    replay, env_rng = new_replay(60), np.random.default_rng(3)
    for t in range(130):
        replay.add(time_step(t, env_rng))
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    plain = replay.sample_from(rng_a, replay.view(), BATCH)
    out = tuple(np.empty(shape, dtype) for shape, dtype in replay.batch_layout(BATCH))
    filled = replay.sample_from(rng_b, replay.view(), BATCH, out=out)
    assert filled is out
    assert all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(plain, out))
