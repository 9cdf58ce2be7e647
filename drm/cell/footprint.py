"""What one running cell keeps on disk, computed from its config without torch (the workflow
prices a grid before any job, and its parse must not import torch): its replay chunks and its
snapshots. tests/test_footprint.py checks the figures against real agents and a real cell.
"""
import math

from drm.cell.config import AGENTS
from drm.cell.replay import FRAME_SHAPE, MAX_ACTION_DIM, ReplayBuffer

REPR_DIM = 32 * 35 * 35  # the encoders' output on 84x84 frames (baselines.drqv2.Encoder)
# A snapshot beside its float32 tensors: counters, generator states, Adam's step counts, the
# file's own framing (under 100 KB measured; a margin).
SNAPSHOT_EXTRA_BYTES = 2**20
# snapshot.pt, snapshot.prev.pt (the fallback) and the next one while it is written and read back
SNAPSHOTS_ON_DISK = 3


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _trunk(feature_dim: int) -> int:
    return _linear(REPR_DIM, feature_dim) + 2 * feature_dim  # Linear, LayerNorm


def _mlp(n_in: int, hidden_dim: int, n_out: int) -> int:
    return _linear(n_in, hidden_dim) + _linear(hidden_dim, hidden_dim) + _linear(hidden_dim, n_out)


def network_parameters(agent: str, channels: int, feature_dim: int, hidden_dim: int,
                       action_dim: int) -> dict[str, int]:
    """Each trained network's parameter count (baselines/drqv2.py, drm/agent.py, baselines/alix.py):
    the four-conv encoder, the actor, the two-headed critic, and what the agent's registry line
    adds (drm.cell.config.Networks: A-LIX's smoothing strength S, DrM's value network)."""
    networks = AGENTS[agent]
    encoder = _linear(channels * 9, 32) + 3 * _linear(32 * 9, 32) + networks.encoder_extra
    counts = {"encoder": encoder,
              "actor": _trunk(feature_dim) + _mlp(feature_dim, hidden_dim, action_dim),
              "critic": _trunk(feature_dim) + 2 * _mlp(feature_dim + action_dim, hidden_dim, 1)}
    if networks.value_predictor:
        counts["value_predictor"] = _trunk(feature_dim) + _mlp(feature_dim, hidden_dim, 1)
    return counts


def snapshot_floats(agent: str, channels: int, feature_dim: int, hidden_dim: int, action_dim: int) -> int:
    """The float32 values of an agent's state in a snapshot: every trained network with its Adam
    moments (two per parameter), plus the target critic (no optimizer)."""
    counts = network_parameters(agent, channels, feature_dim, hidden_dim, action_dim)
    return 3 * sum(counts.values()) + counts["critic"]


def snapshot_bytes(cell) -> int:
    """A snapshot of a composed cell config, at most (the widest DMC action space)."""
    floats = snapshot_floats(cell.agent.name, FRAME_SHAPE[0] * cell.frame_stack, cell.feature_dim,
                             cell.agent.hidden_dim, MAX_ACTION_DIM)
    return 4 * floats + SNAPSHOT_EXTRA_BYTES


def replay_steps(cell) -> tuple[int, int]:
    """(steps the cell adds to its replay in all, steps between two snapshots at most): each
    episode adds its agent steps plus its first (reset) step; a snapshot is taken at the first
    episode end at least snapshot_every_frames after the last."""
    per_episode = cell.episode_frames // cell.action_repeat
    train_steps = cell.num_train_frames // cell.action_repeat
    total = train_steps + math.ceil(train_steps / per_episode)
    between = math.ceil(cell.snapshot_every_frames / cell.episode_frames) * (per_episode + 1)
    return total, between


def chunk_steps(capacity: int, total: int, between: int) -> int:
    """The most replay steps a cell's chunks hold at once: the ring, the steps the fallback
    snapshot needs beyond it, and the chunk being written (drm.train.TrainingRun.save_snapshot prunes
    to the fallback's needs), never more than the cell ever adds."""
    return min(capacity + 3 * between, total)


def chunk_bytes(cell) -> int:
    """A cell's replay chunks on disk, at most (the widest DMC action space)."""
    total, between = replay_steps(cell)
    return chunk_steps(cell.replay_buffer_size, total, between) * ReplayBuffer.max_bytes_per_step()


def disk_bytes(cell) -> int:
    """What a running cell keeps in its work/ folder, at most: replay chunks and snapshots."""
    return chunk_bytes(cell) + SNAPSHOTS_ON_DISK * snapshot_bytes(cell)
