"""A-LIX's parts against hand computations (docs/agents.md §3; baselines/alix.py)."""
import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from baselines.alix import (ALIXAgent, ALIXEncoder, DenseParallel, LIX, LearnS,
                            normalized_discontinuity, nd_score)
from baselines.drqv2 import Encoder


def ramps(n=3, h=16):
    """Channel 0 holds each cell's column index, channel 1 its row index."""
    idx = torch.arange(h, dtype=torch.float32)
    x = torch.stack([idx.expand(h, h), idx[:, None].expand(h, h)])
    return x.expand(n, 2, h, h).clone()


def measured_displacement(lix, s, seed, h=16):
    """(dx, dy) read off resampled ramps, cells 3..h-4 only: with |d| <= 2.5 their bilinear
    footprint stays inside the map, where the ramps are exactly linear; asserts that the whole
    batch and every cell share one offset."""
    torch.manual_seed(seed)
    out = lix(ramps(h=h), torch.tensor(s))
    inner = slice(3, h - 3)
    ref = ramps(h=h)
    d = (out - ref)[:, :, inner, inner]
    assert torch.allclose(d, d[:1, :, :1, :1].expand_as(d), atol=1e-4)
    return d[0, 0, 0, 0].item(), d[0, 1, 0, 0].item()


def official_lix(x, s, pad=2):
    """The official LocalSignalMixing.forward (fixed_batch), step by step, for comparison."""
    p = math.ceil(pad) + 1
    m = s * (2 * pad + 1) / (2 * p + 1)
    n, _, h, _ = x.shape
    x = F.pad(x, (p,) * 4, "replicate")
    arange = torch.arange(h, dtype=x.dtype).unsqueeze(0).repeat(h, 1).unsqueeze(2)
    base_grid = torch.cat([arange, arange.transpose(1, 0)], dim=2).unsqueeze(0).repeat(n, 1, 1, 1)
    shift = torch.rand(size=(1, 1, 1, 2), dtype=x.dtype) * m + (1 - m) / 2
    shift *= 2 * p + 1
    grid = (base_grid + shift) * 2.0 / (h + 2 * p) - 1
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


# At S = 0 the official layer resamples at the undisplaced cells, exact only up to the float32
# rounding of the normalized grid: measured on N(0, 1) maps, up to 2.2e-5 (1.8e-5 on 0-5 ReLU-like maps).
OFFICIAL_S0_ROUNDING = 3e-5


def test_lix_at_s_zero_resamples_as_the_official_layer_and_is_off_in_eval_mode():
    lix = LIX(pad=2)
    torch.manual_seed(0)
    for h in (41, 39, 37, 35):
        x = torch.randn(4, 32, h, h)
        state = torch.random.get_rng_state()
        ours = lix(x, torch.tensor(0.0))
        torch.random.set_rng_state(state)
        assert torch.equal(ours, official_lix(x, torch.tensor(0.0)))
        assert 0 < (ours - x).abs().max() <= OFFICIAL_S0_ROUNDING
    lix.eval()
    before = torch.random.get_rng_state()
    assert lix(x, torch.tensor(1.0)) is x
    assert torch.equal(torch.random.get_rng_state(), before)  # nothing drawn when off


def test_lix_displacement_is_uniform_within_pad_plus_half_times_s():
    lix = LIX(pad=2)
    for s in (1.0, 0.4):
        ds = []
        for seed in range(300):
            dx, dy = measured_displacement(lix, s, seed)
            # The mapping worked out in LIX's docstring: d = (2 pad + 1) S (u - 1/2), u the
            # call's one U[0, 1]^2 draw (x first, then y).
            torch.manual_seed(seed)
            u = torch.rand(1, 1, 1, 2)
            assert dx == pytest.approx(5 * s * (u[0, 0, 0, 0].item() - 0.5), abs=1e-4)
            assert dy == pytest.approx(5 * s * (u[0, 0, 0, 1].item() - 0.5), abs=1e-4)
            ds += [dx, dy]
        bound = 2.5 * s
        assert max(abs(d) for d in ds) <= bound + 1e-4
        assert min(ds) < -0.95 * bound and max(ds) > 0.95 * bound  # the whole range is reached
        assert sum(ds) / len(ds) == pytest.approx(0.0, abs=0.1 * bound)
        # uniform: about a fifth of the 600 draws in each fifth of the range
        counts = torch.histc(torch.tensor(ds), bins=5, min=-bound, max=bound)
        assert counts.min() > 80


def test_lix_never_mixes_in_the_zero_padding():
    """P = ceil(pad) + 1 = 3 replicate cells cover the bilinear footprint of a 2.5-cell move."""
    lix = LIX(pad=2)
    assert lix.pad == 3
    x = torch.ones(2, 3, 35, 35)
    for seed in range(50):
        torch.manual_seed(seed)
        assert torch.allclose(lix(x, torch.tensor(1.0)), x, atol=1e-5)


def test_nd_of_a_constant_gradient_map_is_zero():
    for value in (0.7, -3.0, 0.0):
        grad = torch.full((4, 2, 6, 6), value)
        assert torch.equal(normalized_discontinuity(grad), torch.zeros(1, 2, 6, 6))
        assert nd_score(grad).item() == 0.0


def test_nd_of_a_checkerboard_matches_a_hand_computation():
    """G = a (-1)^(i+j). Inside the map, a cell's 8 neighbours are 4 of the opposite sign (edges)
    and 4 of the same sign (diagonals): signal = (9a^2 - a^2)/8 = a^2, noise = 4 (2a)^2 / 8 = 2a^2,
    ND = 2. Replicate padding: a corner cell's 8 patch values besides itself are 4 copies of +a
    and 4 of -a, so ND = 2 too; a non-corner border cell has 5 of -a and 3 of +a,
    noise = 5 (2a)^2 / 8 = 2.5 a^2, ND = 2.5. On 5x5: 13 cells at ND 2, 12 at ND 2.5."""
    a, h = 0.3, 5
    i = torch.arange(h)
    board = a * (-1.0) ** (i[:, None] + i[None, :])
    noise = torch.randn(2, h, h)
    grad = torch.stack([board + noise, board - noise, board.expand(2, h, h)]).float()  # batch mean: board
    nd = normalized_discontinuity(grad, kernel=3, eps=1e-20)
    expected = torch.full((h, h), 2.5)
    expected[1:-1, 1:-1] = 2.0
    expected[0, 0] = expected[0, -1] = expected[-1, 0] = expected[-1, -1] = 2.0
    assert torch.allclose(nd, expected.expand(1, 2, h, h), rtol=1e-5)
    hand = (13 * math.log(3.0) + 12 * math.log(3.5)) / 25
    assert nd_score(grad).item() == pytest.approx(hand, rel=1e-5)


def _s_steps(grad, steps=5):
    """Run `steps` Adam steps of S (official group: lr 2e-3, betas (0.5, 0.999)) on LearnS."""
    s = torch.nn.Parameter(torch.tensor(0.5))
    opt = torch.optim.Adam([s], lr=2e-3, betas=(0.5, 0.999))
    values = [s.item()]
    for _ in range(steps):
        x = torch.randn(grad.shape, requires_grad=True)
        opt.zero_grad()
        LearnS.apply(x, s, 3, 0.535, 1e-20, None).backward(grad)
        assert torch.equal(x.grad, grad)  # the feature gradient passes unchanged
        assert s.grad.item() == pytest.approx(0.535 - nd_score(grad).item(), abs=1e-6)
        opt.step()
        values.append(s.item())
    return values


def test_s_rises_on_discontinuous_gradients_and_falls_on_smooth_ones():
    h = 8
    i = torch.arange(h)
    board = (-1.0) ** (i[:, None] + i[None, :])
    rough = board.expand(4, 3, h, h).clone() + 0.1 * torch.randn(4, 3, h, h)
    smooth = (5.0 + 0.05 * (i[:, None] + i[None, :])).expand(4, 3, h, h).float().clone()
    assert nd_score(rough).item() > 0.535 > nd_score(smooth).item()
    up, down = _s_steps(rough), _s_steps(smooth)
    assert all(b > a for a, b in zip(up, up[1:]))
    assert all(b < a for a, b in zip(down, down[1:]))
    # Adam's first step moves by lr whatever the gradient's size
    assert up[1] - up[0] == pytest.approx(2e-3, rel=1e-3)
    assert down[0] - down[1] == pytest.approx(2e-3, rel=1e-3)


def test_only_the_encoder_output_gradient_reaches_s():
    torch.manual_seed(0)
    enc = ALIXEncoder((9, 84, 84))
    obs = torch.randint(0, 256, (3, 9, 84, 84)).float()
    weights = torch.randn(3, enc.repr_dim)
    (enc(obs) * weights).sum().backward()
    expected = 0.535 - nd_score(weights.view(3, 32, 35, 35)).item()
    assert enc.S.grad.item() == pytest.approx(expected, abs=1e-6)
    assert enc.nd_score.item() == pytest.approx(0.535 - expected, abs=1e-6)


def test_s_is_clamped_to_unit_interval_at_every_forward():
    enc = ALIXEncoder((9, 84, 84)).eval()
    obs = torch.zeros(1, 9, 84, 84)
    for raw, clamped in ((1.3, 1.0), (-0.2, 0.0), (0.25, 0.25)):
        enc.S.data.fill_(raw)
        enc(obs)
        assert enc.S.item() == clamped


def make_agent(**kwargs):
    return ALIXAgent(
        obs_shape=(9, 84, 84), action_shape=(2,), device="cpu", lr=1e-4, feature_dim=8,
        hidden_dim=32, critic_target_tau=0.01, num_expl_steps=0,
        stddev_schedule="linear(1.0,0.1,1000)", stddev_clip=0.3, **kwargs)


def make_batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 9, 84, 84), dtype=torch.uint8, generator=g),
            torch.rand(n, 2, generator=g) * 2 - 1, torch.rand(n, 1, generator=g),
            torch.ones(n, 1), torch.randint(0, 256, (n, 9, 84, 84), dtype=torch.uint8, generator=g))


def plain_encoder(agent):
    """DrQ-v2's encoder with the A-LIX encoder's conv weights: A-LIX without LIX."""
    enc = Encoder((9, 84, 84))
    convs = [m for m in enc.convnet if isinstance(m, torch.nn.Conv2d)]
    for conv, alix_conv in zip(convs, agent.encoder.convs):
        conv.load_state_dict(alix_conv.state_dict())
    return enc


def test_lix_is_off_when_acting():
    torch.manual_seed(0)
    agent = make_agent()
    obs = make_batch()[0]
    plain = plain_encoder(agent)
    for eval_mode in (True, False):
        torch.manual_seed(1)
        action = agent.act(obs[0].numpy(), 10, eval_mode)
        torch.manual_seed(1)
        with torch.no_grad():
            dist = agent.actor(plain(obs[:1].float()), agent.stddev(10))
            expected = dist.mean if eval_mode else dist.sample(clip=None)
        assert torch.equal(torch.as_tensor(action), expected[0])
    assert agent.training and agent.encoder.training  # act restores training mode


def test_obs_and_next_obs_both_pass_through_lix_in_updates():
    torch.manual_seed(0)
    agent = make_agent()
    batch = make_batch()
    obs, next_obs = batch[0].float(), batch[4].float()
    conv0 = copy.deepcopy(agent.encoder.convs[0])
    calls = []

    def hook(module, inputs, output):
        calls.append((module.training, inputs[0].detach().clone(), output.detach().clone()))

    handles = [lix.register_forward_hook(hook) for lix in agent.encoder.lix]
    try:
        metrics = agent.update(batch, step=10)
    finally:
        for handle in handles:
            handle.remove()
    assert len(calls) == 8  # four LIX layers for obs, four for next_obs; none for the actor
    assert all(training and not torch.equal(inp, out) for training, inp, out in calls)
    with torch.no_grad():
        assert torch.allclose(calls[0][1], F.relu(conv0(obs / 255.0 - 0.5)))
        assert torch.allclose(calls[4][1], F.relu(conv0(next_obs / 255.0 - 0.5)))
    assert agent.encoder.S.item() != 0.5  # the update gave S a gradient
    assert math.isfinite(metrics["lix_nd_score"])
    assert set(agent.log_columns()) >= {*metrics, "lix_s"}
    assert agent.log_state() == {"lix_s": agent.encoder.S.item()}


def test_optimizer_groups_critic_init_and_no_augmentation():
    agent = make_agent()
    conv_group, s_group = agent.encoder_opt.param_groups
    assert s_group["params"] == [agent.encoder.S]
    assert (s_group["lr"], s_group["betas"]) == (2e-3, (0.5, 0.999))
    assert (conv_group["lr"], conv_group["betas"]) == (1e-4, (0.9, 0.999))
    assert len(conv_group["params"]) == 8  # 4 convs x (weight, bias)
    x = torch.randn(2, 9, 84, 84)
    assert torch.equal(agent.aug(x), x)
    layers = [m for m in agent.critic.QS if isinstance(m, DenseParallel)]
    assert [tuple(m.weight.shape) for m in layers] == [(2, 10, 32), (2, 32, 32), (2, 32, 1)]
    for layer in layers:
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
        for w in layer.weight:  # orthogonal with gain sqrt(2): W^T W or W W^T = 2 I
            gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
            assert torch.allclose(gram, 2 * torch.eye(gram.shape[0]), atol=1e-5)
    q1, q2 = agent.critic(torch.randn(5, agent.encoder.repr_dim), torch.zeros(5, 2))
    assert q1.shape == q2.shape == (5, 1) and not torch.equal(q1, q2)


def test_snapshot_round_trip_continues_identically():
    torch.manual_seed(0)
    agent = make_agent()
    agent.update(make_batch(seed=1), step=10)
    state = copy.deepcopy(agent.state_dict())
    rng = torch.random.get_rng_state()
    first = agent.update(make_batch(seed=2), step=12)

    torch.manual_seed(5)
    resumed = make_agent()
    resumed.load_state_dict(state)
    torch.random.set_rng_state(rng)
    second = resumed.update(make_batch(seed=2), step=12)
    assert first.keys() == second.keys()
    assert all(first[k] == second[k] or math.isnan(first[k]) and math.isnan(second[k]) for k in first)
    assert resumed.encoder.S.item() == agent.encoder.S.item()


@pytest.mark.parametrize("key,value", [
    ("lix_s_init", 1.5), ("nd_kernel", 4), ("nd_kernel", 1), ("nd_eps", 0.0), ("s_lr", -1.0),
    ("s_betas", [0.5]), ("s_betas", [0.5, 1.0]), ("s_betas", 0.5), ("lix_pad", -1), ("nd_target", float("nan")),
])
def test_bad_settings_are_refused(key, value):
    with pytest.raises(ValueError, match=f"agent.{key}="):
        make_agent(**{key: value})


def test_config_builds_the_agent():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    cfg_dir = str(Path(__file__).resolve().parents[1] / "drm" / "cfg")
    with initialize_config_dir(config_dir=cfg_dir, version_base="1.3"):
        cfg = compose("config", overrides=[
            "agent=alix", "out_dir=x", "lr=1e-4", "feature_dim=8", "stddev_schedule=0.2"])
    agent_cfg = dict(cfg.agent)
    assert agent_cfg.pop("name") == "alix"
    assert agent_cfg.pop("replay_sample_running_episode") is True  # the loop's key
    assert agent_cfg["nd_eps"] == 1e-20 and agent_cfg["s_lr"] == 2e-3
    agent = instantiate(agent_cfg, obs_shape=(9, 84, 84), action_shape=(1,), device="cpu")
    assert isinstance(agent, ALIXAgent)
    assert agent.s_betas == (0.5, 0.999) and agent.encoder.S.item() == 0.5
    assert agent.encoder.lix[0].pad == 3 and agent.nd_kernel == 3 and agent.nd_target == 0.535
