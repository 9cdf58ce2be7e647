"""What a running cell keeps on disk (drm/cell/footprint.py), against real agents and a real cell:
the figures the workflow states before a grid starts."""
import hydra
import pytest
import torch
from omegaconf import OmegaConf

from drm.bench.workload import random_batch
from drm.cell import config, footprint, snapshot
from drm.cell.replay import ReplayBuffer


def floats_in(state) -> int:
    """float32 values of a state dict, Adam's step counts (one scalar per parameter) left out."""
    if isinstance(state, dict):
        return sum(floats_in(value) for key, value in state.items() if key != "step")
    if isinstance(state, (list, tuple)):
        return sum(floats_in(value) for value in state)
    return state.numel() if isinstance(state, torch.Tensor) and state.dtype == torch.float32 else 0


@pytest.mark.parametrize("agent", list(config.AGENTS))  # every registered agent
@pytest.mark.parametrize("feature_dim, hidden_dim, actions", [(50, 32, 1), (100, 64, 6)])
def test_a_snapshot_holds_the_floats_the_parameter_counts_say(agent, feature_dim, hidden_dim, actions):
    cfg = config.compose(agent, "cartpole_balance", {"feature_dim": feature_dim, "agent.hidden_dim": hidden_dim,
                                                     "device": "cpu"})
    agent_cfg = OmegaConf.to_container(cfg.agent, resolve=True)
    for key in ("name", "replay_sample_running_episode"):
        agent_cfg.pop(key)
    torch.manual_seed(0)
    built = hydra.utils.instantiate(agent_cfg, obs_shape=(9, 84, 84), action_shape=(actions,), device="cpu")
    built.update(random_batch(2, action_shape=(actions,), seed=0), step=10_000)  # Adam's moments exist
    assert floats_in(built.state_dict()) == footprint.snapshot_floats(agent, 9, feature_dim, hidden_dim, actions)


def test_the_paper_agents_snapshot_sizes_by_hand():
    """DrM at feature_dim 50 (easy and medium tasks), hidden 1024, cartpole's one action."""
    trunk = 39_200 * 50 + 50 + 2 * 50
    encoder = 9 * 9 * 32 + 32 + 3 * (32 * 9 * 32 + 32)
    actor = trunk + (50 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 1 + 1)
    critic = trunk + 2 * ((51 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 + 1))
    value = trunk + (50 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 + 1)
    assert footprint.snapshot_floats("drm", 9, 50, 1024, 1) == 3 * (encoder + actor + critic + value) + critic


# A DrM cell at full size with updates from frame 200 and a ring of 150 steps that the replay
# overruns, so chunks are pruned: a snapshot after every 100-frame episode.
CELL = dict(num_train_frames=1000, num_seed_frames=200, eval_every_frames=1000, num_eval_episodes=1,
            batch_size=4, episode_frames=100, snapshot_every_frames=100, replay_buffer_size=150,
            device="cpu", threads=1, progress=False)


@pytest.mark.slow
def test_a_real_cells_snapshots_and_chunks_stay_within_the_stated_figures(tmp_path, monkeypatch):
    from drm.train import TrainingRun

    cfg = config.compose("drm", "cartpole_balance", CELL)
    cfg.out_dir = str(tmp_path / "cell")
    work = tmp_path / "cell" / "work"
    save, seen = snapshot.save, []

    def measure_then_save(path, state):  # the new chunk is written, the old ones not yet pruned
        chunks = sorted((work / "replay").glob("*.npz"))
        seen.append((sum(p.stat().st_size for p in chunks), chunks))
        save(path, state)
        seen[-1] += (path.stat().st_size,)

    monkeypatch.setattr(snapshot, "save", measure_then_save)
    threads = torch.get_num_threads()
    try:
        TrainingRun(cfg).run()
    finally:
        torch.set_num_threads(threads)
    assert len(seen) == 9, "a snapshot after each episode but the last"
    estimate = footprint.snapshot_bytes(cfg)  # at the widest action space: cartpole has one action
    widest = 4 * (footprint.snapshot_floats("drm", 9, 50, 1024, 56)
                  - footprint.snapshot_floats("drm", 9, 50, 1024, 1))
    for _, _, snapshot_bytes in seen[2:]:  # from the first update on (frame 200), Adam's moments too
        assert estimate - widest - footprint.SNAPSHOT_EXTRA_BYTES < snapshot_bytes <= estimate - widest
    assert max(size for _, _, size in seen) == seen[-1][2], "the first two are smaller"
    total, between = footprint.replay_steps(cfg)
    assert (total, between) == (500 + 10, 51)
    steps = max(sum(int(p.stem.split("-")[1]) - int(p.stem.split("-")[0]) for p in chunks)
                for _, chunks, _ in seen)
    assert steps > 150, "the chunks hold more than the ring: the fallback's steps too"
    assert steps <= footprint.chunk_steps(150, total, between) == 150 + 3 * 51
    per_step = ReplayBuffer.bytes_per_step((3, 84, 84), (1,))
    assert max(b for b, _, _ in seen) <= steps * per_step + 4096 * len(seen[-1][1])  # zip framing
    assert footprint.chunk_bytes(cfg) == footprint.chunk_steps(150, total, between) * ReplayBuffer.max_bytes_per_step()
