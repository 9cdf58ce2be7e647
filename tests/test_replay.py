"""The frame-once replay against a naive computation over whole stored episodes."""
import numpy as np
import pytest

from drm.cell.dmc import TimeStep
from drm.cell.replay import ReplayBuffer

GAMMA = 0.9


def fake_episodes(lengths, action_dim=2, seed=0):
    """Episodes of TimeSteps whose frames encode (episode, t) so stacks can be checked."""
    rng = np.random.default_rng(seed)
    episodes = []
    for e, length in enumerate(lengths):
        steps = []
        for t in range(length + 1):
            frame = np.full((3, 4, 4), (e * 50 + t) % 256, dtype=np.uint8)
            steps.append(TimeStep(
                observation=None, frame=frame,
                action=np.zeros(action_dim, np.float32) if t == 0 else rng.uniform(-1, 1, action_dim).astype(np.float32),
                reward=0.0 if t == 0 else float(rng.uniform()), discount=1.0 if t == 0 else float(rng.choice([1.0, 0.5])),
                first=t == 0, last=t == length))
        episodes.append(steps)
    return episodes


def ring(capacity, nstep=3, seed=0, running=False, episodes=()) -> ReplayBuffer:
    """A replay of 3x4x4 frames and 2-d actions (stacks of 3) holding `episodes`' steps."""
    replay = ReplayBuffer(capacity, (3, 4, 4), (2,), frame_stack=3, nstep=nstep, discount=GAMMA,
                          seed=seed, sample_running_episode=running)
    for ts in (ts for steps in episodes for ts in steps):
        replay.add(ts)
    return replay


def naive_transitions(episodes, nstep, stack):
    """Every (obs, action, n-step reward, discount, next_obs) DrQ-v2's per-episode code can sample."""
    out = []
    for steps in episodes:
        frames = [s.frame for s in steps]

        def obs(t):
            return np.concatenate([frames[max(t - k, 0)] for k in reversed(range(stack))])

        for t in range(len(steps) - nstep):  # DrQ-v2: idx = t + 1 in [1, len - nstep]
            reward, discount = 0.0, 1.0
            for i in range(nstep):
                reward += discount * steps[t + 1 + i].reward
                discount *= steps[t + 1 + i].discount * GAMMA
            out.append((obs(t), steps[t + 1].action, reward, discount, obs(t + nstep)))
    return out


def key(obs, action, next_obs):
    return (obs.tobytes(), action.tobytes(), next_obs.tobytes())


@pytest.mark.parametrize("nstep", [1, 3])
def test_every_sample_is_a_reference_transition_and_all_are_reached(nstep):
    episodes = fake_episodes([7, 5, 9])
    replay = ReplayBuffer(1000, (3, 4, 4), (2,), frame_stack=3, nstep=nstep, discount=GAMMA, seed=1,
                          sample_running_episode=False)
    for steps in episodes:
        for ts in steps:
            replay.add(ts)
    reference = {key(o, a, n): (r, d) for o, a, r, d, n in naive_transitions(episodes, nstep, 3)}
    obs, action, reward, discount, next_obs = replay.sample(4000)
    seen = set()
    for i in range(len(obs)):
        k = key(obs[i], action[i], next_obs[i])
        assert k in reference, "sampled a transition the reference does not have"
        r, d = reference[k]
        assert reward[i, 0] == pytest.approx(r, rel=1e-6)
        assert discount[i, 0] == pytest.approx(d, rel=1e-6)
        seen.add(k)
    assert seen == set(reference), "uniform sampling should reach every valid transition"


def test_sampling_is_uniform_over_transitions():
    replay = ring(100, nstep=2, seed=3, episodes=fake_episodes([6, 6]))
    obs, action, *_ = replay.sample(20000)
    counts = {}
    for i in range(len(obs)):
        counts[action[i].tobytes()] = counts.get(action[i].tobytes(), 0) + 1
    assert len(counts) == 2 * (6 + 1 - 2)
    expected = 20000 / len(counts)
    assert all(abs(c - expected) < 5 * np.sqrt(expected) for c in counts.values())


def test_stacks_never_cross_episode_boundaries():
    replay = ring(100, nstep=1, episodes=fake_episodes([4, 4]))
    obs, _, _, _, next_obs = replay.sample(2000)
    for stack in np.concatenate([obs, next_obs]):
        values = stack[::3, 0, 0].astype(int)  # one value per stacked frame: e * 50 + t
        assert len({v // 50 for v in values}) == 1


def test_ring_is_bounded_and_forgets_the_oldest_steps():
    episodes = fake_episodes([9] * 6)
    replay = ReplayBuffer(25, (3, 4, 4), (2,), frame_stack=3, nstep=3, discount=GAMMA, seed=0,
                          sample_running_episode=False)
    for ts in (ts for steps in episodes for ts in steps):
        replay.add(ts)
    assert len(replay) == 25 and replay.frames.shape[0] == 25
    reference = {key(o, a, n) for o, a, r, d, n in naive_transitions(episodes, 3, 3)}
    obs, action, _, _, next_obs = replay.sample(3000)
    oldest_kept_episode = (60 - 25) // 10
    for i in range(len(obs)):
        assert key(obs[i], action[i], next_obs[i]) in reference
        assert obs[i][0, 0, 0] // 50 >= oldest_kept_episode


@pytest.mark.parametrize("running", [False, True])
def test_snapshot_chunks_rebuild_the_ring_and_only_new_steps_are_written(tmp_path, running):
    steps = [ts for episode in fake_episodes([8] * 7) for ts in episode]

    a = ring(20, seed=5, running=running)
    saved = 0
    for cut in (10, 30, 43):  # three snapshots; the ring (20) wraps between them; 43 is mid-episode
        for ts in steps[a.total:cut]:
            a.add(ts)
        a.save_chunks(tmp_path, saved)
        saved, finished = a.total, a.finished_total
        a.prune_chunks(tmp_path)
    assert finished == 36  # four 9-step episodes have ended
    # steps [0, 10) fell out of the ring (oldest kept: 43 - 20 = 23); each chunk holds new steps only
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "000000000010-000000000030.npz", "000000000030-000000000043.npz"]
    for ts in steps[43:50]:  # steps after the last snapshot, then a chunk that never completed
        a.add(ts)
    a.save_chunks(tmp_path, saved)
    b = ring(20, seed=99, running=running)
    b.load_chunks(tmp_path, 43, finished)
    b.rng.bit_generator.state = a.rng.bit_generator.state
    assert not (tmp_path / "000000000043-000000000050.npz").exists(), "an uncommitted chunk is dropped"
    a_at_43 = ring(20, seed=5, running=running)
    for ts in steps[:43]:
        a_at_43.add(ts)
    a_at_43.rng.bit_generator.state = a.rng.bit_generator.state
    for x, y in zip(a_at_43.sample(64), b.sample(64)):
        np.testing.assert_array_equal(x, y)


def episode_of(stacks: np.ndarray) -> np.ndarray:
    """The episode index fake_episodes wrote into each stack's newest frame (e * 50 + t)."""
    return stacks[:, -3, 0, 0].astype(int) // 50


@pytest.mark.parametrize("running", [False, True])
def test_the_running_episode_is_sampled_only_when_asked(running):
    episodes = fake_episodes([7, 5, 9])
    replay = ReplayBuffer(1000, (3, 4, 4), (2,), frame_stack=3, nstep=3, discount=GAMMA, seed=2,
                          sample_running_episode=running)
    for ts in [ts for steps in episodes[:2] for ts in steps] + episodes[2][:8]:  # episode 2 runs
        replay.add(ts)
    obs, _, _, _, next_obs = replay.sample(4000)
    sampled = set(episode_of(obs)) | set(episode_of(next_obs))
    assert sampled == ({0, 1, 2} if running else {0, 1})


def test_without_an_ended_episode_the_official_setting_has_nothing_to_sample():
    replay = ReplayBuffer(100, (3, 4, 4), (2,), frame_stack=3, nstep=1, discount=GAMMA, seed=0,
                          sample_running_episode=False)
    for ts in fake_episodes([9])[0][:6]:
        replay.add(ts)
    with pytest.raises(RuntimeError, match="of a finished episode"):
        replay.sample(4)


def test_one_frame_per_time_step_is_stored():
    assert ReplayBuffer.bytes_per_step((3, 84, 84), (6,)) == 21168 + 24 + 16
    assert ReplayBuffer.bytes_per_step((3, 84, 84), (38,)) <= 21_700
