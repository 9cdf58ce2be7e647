"""DrQ-v2's pieces, value by value against docs/agents.md §1."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines import schedule, utils
from baselines.drqv2 import DrQV2Agent, Encoder
from drm.bench.official import official_encoder
from drm.bench.official import random_shift_grid_sample as official_random_shift
from drm.cell import presets
from drm.dormant import dormant_ratio


# The official grid_sample reads each pixel at a whole-pixel position only up to the float32
# rounding of its normalized grid (~1.4e-5 of a pixel), so it mixes in that much of a
# neighbour: measured over random 0-255 images, up to 3.54e-3 in ~40% of the elements.
OFFICIAL_SHIFT_ROUNDING = 3.6e-3


def test_random_shift_is_the_exact_crop_and_within_rounding_of_the_official_grid_sample():
    x = torch.randint(0, 256, (8, 9, 84, 84)).float()
    torch.manual_seed(3)
    ours = utils.RandomShiftsAug(4)(x)
    torch.manual_seed(3)
    shift = torch.randint(0, 9, size=(8, 1, 1, 2))  # the same draw: [..., 0] moves x, [..., 1] y
    padded = F.pad(x, (4,) * 4, "replicate")
    crop = torch.stack([p[:, dy:dy + 84, dx:dx + 84] for p, (dx, dy) in zip(padded, shift[:, 0, 0].tolist())])
    assert torch.equal(ours, crop)
    difference = (ours - official_random_shift(x, 4, shift)).abs()
    assert 0 < difference.max() <= OFFICIAL_SHIFT_ROUNDING


def test_cropping_the_uint8_images_then_converting_equals_the_official_order():
    # encode_batch crops the replay's uint8 images and converts after; the official code
    # converts first (aug(obs.float())). Same draw, same pixels, bitwise.
    x = torch.randint(0, 256, (16, 9, 84, 84), dtype=torch.uint8)
    aug = utils.RandomShiftsAug(4)
    torch.manual_seed(7)
    official_order = aug(x.float())
    torch.manual_seed(7)
    ours = aug(x).float()
    assert ours.dtype == torch.float32 and ours.is_contiguous()
    assert torch.equal(ours, official_order)


def test_normalizing_in_place_equals_the_official_expression_for_every_pixel_value():
    pixels = torch.arange(256, dtype=torch.uint8).repeat(40).reshape(10, 1, 32, 32)
    for obs in (pixels, pixels.float()):
        before = obs.clone()
        ours = utils.normalize_pixels(obs)
        assert ours.dtype == torch.float32 and torch.equal(ours, pixels.float() / 255.0 - 0.5)
        assert torch.equal(obs, before)  # the caller's tensor is left alone


def test_encoder_with_in_place_relus_equals_the_official_encoder_and_its_gradients():
    torch.manual_seed(0)
    ours = Encoder((9, 84, 84))
    official = official_encoder(copy.deepcopy(ours))
    assert all(m.inplace for m in ours.convnet if isinstance(m, torch.nn.ReLU))
    obs = torch.randint(0, 256, (4, 9, 84, 84), dtype=torch.uint8)
    ours_out, official_out = ours(obs), official(obs.float())
    assert torch.equal(ours_out, official_out)
    ours_out.square().sum().backward()
    official_out.square().sum().backward()
    for a, b in zip(ours.parameters(), official.parameters()):
        assert torch.equal(a.grad, b.grad)


def test_linear_schedule_counts_agent_steps():
    assert schedule.schedule("linear(1.0,0.1,500000)", 0) == 1.0
    assert schedule.schedule("linear(1.0,0.1,500000)", 250000) == pytest.approx(0.55)
    assert schedule.schedule("linear(1.0,0.1,500000)", 10**7) == pytest.approx(0.1)
    assert schedule.schedule("0.2", 5) == 0.2


def test_truncated_normal_clips_noise_then_clamps():
    torch.manual_seed(0)
    dist = utils.TruncatedNormal(torch.zeros(10000), torch.ones(10000) * 5.0)
    clipped = dist.sample(clip=0.3)
    assert clipped.abs().max() <= 0.3 + 1e-6
    free = dist.sample()
    assert free.abs().max() <= 1 - 1e-6 + 1e-7


def small_agent(**kwargs):
    args = dict(obs_shape=(9, 84, 84), action_shape=(2,), device="cpu", lr=1e-4, feature_dim=50,
                hidden_dim=64, critic_target_tau=0.01, num_expl_steps=2000,
                stddev_schedule="linear(1.0,0.1,500000)", stddev_clip=0.3,
                dormant_ratio_fn=dormant_ratio)
    return DrQV2Agent(**{**args, **kwargs})


def test_networks_have_the_official_shapes_and_init():
    agent = small_agent()
    assert agent.encoder.repr_dim == 32 * 35 * 35
    out = agent.encoder(torch.zeros(2, 9, 84, 84))
    assert out.shape == (2, 39200)
    w = agent.actor.policy[0].weight
    torch.testing.assert_close(w.T @ w, torch.eye(50), atol=1e-4, rtol=0)  # orthogonal (64x50), gain 1
    assert all(float(m.bias.abs().sum()) == 0 for m in agent.critic.modules() if isinstance(m, torch.nn.Linear))
    for p, q in zip(agent.critic.parameters(), agent.critic_target.parameters()):
        assert torch.equal(p, q)


def test_acting_is_uniform_during_exploration_and_the_mean_in_eval():
    agent = small_agent()
    obs = np.random.default_rng(0).integers(0, 256, (9, 84, 84), dtype=np.uint8)
    explore = np.stack([agent.act(obs, step=10, eval_mode=False) for _ in range(200)])
    assert explore.min() < -0.8 and explore.max() > 0.8
    assert np.array_equal(agent.act(obs, 10, eval_mode=True), agent.act(obs, 10, eval_mode=True))


def test_update_trains_encoder_critic_actor_and_polyak_target():
    torch.manual_seed(0)
    agent = small_agent()
    batch = (torch.randint(0, 256, (8, 9, 84, 84), dtype=torch.uint8), torch.rand(8, 2) * 2 - 1,
             torch.rand(8, 1), torch.full((8, 1), 0.99 ** 3), torch.randint(0, 256, (8, 9, 84, 84), dtype=torch.uint8))
    before = {name: [p.clone() for p in getattr(agent, name).parameters()]
              for name in ("encoder", "actor", "critic", "critic_target")}
    metrics = agent.update(batch, step=3000)
    assert set(agent.log_columns()) <= set(metrics)
    assert 0.0 <= metrics["actor_dormant_ratio"] <= 1.0
    assert metrics["stddev"] == pytest.approx(schedule.schedule("linear(1.0,0.1,500000)", 3000))
    for name in ("encoder", "actor", "critic"):
        assert any(not torch.equal(a, b) for a, b in zip(before[name], getattr(agent, name).parameters()))
    # target <- 0.01 * critic + 0.99 * target, the critic having moved from the target's values
    for old, new, online in zip(before["critic_target"], agent.critic_target.parameters(), agent.critic.parameters()):
        torch.testing.assert_close(new, 0.99 * old + 0.01 * online, atol=1e-6, rtol=1e-5)


def test_state_dict_round_trip():
    a, b = small_agent(), small_agent()
    b.load_state_dict(a.state_dict())
    for name in ("encoder", "actor", "critic", "critic_target"):
        for p, q in zip(getattr(a, name).parameters(), getattr(b, name).parameters()):
            assert torch.equal(p, q)


@pytest.mark.parametrize("agent, task, expected", [
    ("drqv2", "walker_walk", {"nstep": 1, "batch_size": 512, "num_train_frames": 1_100_000}),
    ("drqv2", "humanoid_run", {"lr": 8.0e-5, "feature_dim": 100, "num_train_frames": 30_100_000,
                               "stddev_schedule": "linear(1.0,0.1,2000000)"}),
    ("drqv2", "quadruped_run", {"replay_buffer_size": 100_000, "num_train_frames": 3_100_000}),
    ("alix", "dog_run", {"lr": 8.0e-5, "feature_dim": 100, "num_train_frames": 30_100_000}),
    ("drm", "walker_run", {"nstep": 3, "batch_size": 512, "agent.max_perturb_factor": 1.0}),
    ("drm", "dog_trot", {"agent.max_perturb_factor": 0.9, "agent.target_lambda": 0.6, "lr": 8.0e-5}),
    ("drm", "manipulator_bring_ball", {"lr": 8.0e-5, "feature_dim": 50, "num_train_frames": 30_100_000}),
])
def test_task_presets_match_the_official_configs(agent, task, expected):
    settings = presets.task_settings(agent, task)
    assert {k: settings[k] for k in expected} == expected
