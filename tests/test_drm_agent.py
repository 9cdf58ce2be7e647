"""DrM's mechanisms (drm/agent.py) against hand-computed values (docs/agents.md §2.3-2.6).

Agents are tiny (feature_dim 4, hidden 16) on real 9x84x84 observations, on the CPU; one is
built per module and deep-copied for each test.
"""
import copy
import inspect
import io
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from baselines import utils
from drm.agent import (DrMAgent, awaken_sigmoid, expectile_loss, exploit_lambda,
                       perturb_factor)
from drm.train import LOOP_KEYS

REPO = Path(__file__).resolve().parents[1]
B, A = 4, 2
KW = dict(obs_shape=(9, 84, 84), action_shape=(A,), device="cpu", lr=1e-4, feature_dim=4,
          hidden_dim=16, critic_target_tau=0.01, num_expl_steps=10,
          stddev_schedule="linear(1.0,0.1,100)", stddev_clip=0.3,
          dormant_perturb_interval=1000, max_perturb_factor=0.9, target_lambda=0.6)
NETS = ("actor", "critic", "critic_target", "encoder", "value_predictor")  # official perturb order
OPTS = ("actor_opt", "critic_opt", "encoder_opt", "predictor_opt")


@pytest.fixture(scope="module")
def proto():
    torch.manual_seed(0)
    return DrMAgent(**KW)


@pytest.fixture
def agent(proto):
    return copy.deepcopy(proto)


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 256, (B, 9, 84, 84), dtype=torch.uint8, generator=g)
    next_obs = torch.randint(0, 256, (B, 9, 84, 84), dtype=torch.uint8, generator=g)
    action = torch.rand(B, A, generator=g) * 2 - 1
    reward = torch.rand(B, 1, generator=g)
    return obs, action, reward, torch.full((B, 1), 0.99 ** 3), next_obs


def script_beta(agent, betas):
    """Make the next updates measure the given dormant ratios, in order."""
    betas = iter(betas)
    agent.measure_dormant_ratio = lambda _features: next(betas)


# ---------------------------------------------------------------- schedules (2.3, 2.4, 2.5)
SIGMA = {1.0: 0.9996646498695336, 0.3: 0.7310585786300049, 0.2: 0.5,
         0.1: 0.2689414213699951, 0.0: 0.11920292202211755}  # 1/(1+exp(-10(b-0.2)))
LAMBDA = {1.0: 2.5490125531749532e-18, 0.3: 0.004015710554570917, 0.2: 0.3,
          0.1: 0.5959842894454291, 0.0: 0.5999727612787785}  # 0.6/(1+exp(50(b-0.2)))


@pytest.mark.parametrize("beta", sorted(SIGMA))
def test_awaken_sigma(beta, agent):
    assert awaken_sigmoid(beta, 0.2, 10) == pytest.approx(SIGMA[beta], rel=1e-12)
    agent.dormant_ratio = beta  # not awakened yet: sigma is the sigmoid alone
    assert agent.stddev(5) == pytest.approx(SIGMA[beta], rel=1e-12)


@pytest.mark.parametrize("beta", sorted(LAMBDA))
def test_exploit_lambda(beta, agent):
    assert exploit_lambda(beta, 0.6, 0.2, 50) == pytest.approx(LAMBDA[beta], rel=1e-12)
    agent.dormant_ratio = beta
    assert agent.exploit_lambda() == pytest.approx(LAMBDA[beta], rel=1e-12)


@pytest.mark.parametrize("beta, alpha, alpha_capped", [
    (0.0, 1.0, 0.6), (0.05, 0.9, 0.6), (0.1, 0.8, 0.6), (0.2, 0.6, 0.6),
    (0.4, 0.2, 0.2), (0.7, 0.2, 0.2), (1.0, 0.2, 0.2)])
def test_perturb_factor(beta, alpha, alpha_capped):
    """alpha = clip(1 - 2 beta, 0.2, max): max 1.0 (most DMC tasks) and 0.6 (dog, humanoid_run)."""
    assert perturb_factor(beta, 2, 0.2, 1.0) == pytest.approx(alpha)
    assert perturb_factor(beta, 2, 0.2, 0.6) == pytest.approx(alpha_capped)


# ---------------------------------------------------------------- perturbation (2.3)
def _linear_params(net):
    return [(f"{n}.{p}", t) for n, m in net.named_modules() if isinstance(m, nn.Linear)
            for p, t in m.named_parameters(recurse=False)]


def test_perturbation_mixes_linear_layers_only(agent):
    old = {name: copy.deepcopy(getattr(agent, name)) for name in NETS}
    assert all(torch.equal(a, b) for a, b in zip(agent.critic.parameters(), agent.critic_target.parameters()))
    agent.dormant_ratio = 0.1  # alpha = clip(1 - 0.2, 0.2, 0.9) = 0.8
    torch.manual_seed(123)
    assert agent.perturb() == pytest.approx(0.8)
    assert agent.perturb_count == 1

    # Replay the fresh draws: same seed, same order, same shapes.
    torch.manual_seed(123)
    fresh = {}
    for name in NETS:
        fresh[name] = copy.deepcopy(old[name])
        fresh[name].apply(utils.weight_init)

    for name in ("actor", "critic", "critic_target", "value_predictor"):
        new_net, old_net, phi = getattr(agent, name), old[name], fresh[name]
        new_p, old_p, phi_p = (dict(_linear_params(n)) for n in (new_net, old_net, phi))
        assert len(new_p) == {"actor": 8, "critic": 14, "critic_target": 14, "value_predictor": 8}[name]
        for key in new_p:
            torch.testing.assert_close(new_p[key], 0.8 * old_p[key] + 0.2 * phi_p[key],
                                       rtol=1e-6, atol=1e-7)
            if key.endswith("bias"):  # a fresh bias is 0: biases just shrink by alpha
                torch.testing.assert_close(new_p[key], 0.8 * old_p[key], rtol=1e-6, atol=0.0)
        for (n, m), (_, m_old) in zip(new_net.named_modules(), old_net.named_modules()):
            if isinstance(m, nn.LayerNorm):
                assert torch.equal(m.weight, m_old.weight) and torch.equal(m.bias, m_old.bias), n
    for p, p_old in zip(agent.encoder.parameters(), old["encoder"].parameters()):
        assert torch.equal(p, p_old)  # no Linear in the conv encoder: untouched

    # Critic and target were equal; each got its own fresh draw, so now they differ...
    crit, targ = dict(_linear_params(agent.critic)), dict(_linear_params(agent.critic_target))
    assert all(not torch.equal(crit[k], targ[k]) for k in crit if k.endswith("weight"))
    # ... by exactly 0.2 * (phi_critic - phi_target).
    phi_c, phi_t = dict(_linear_params(fresh["critic"])), dict(_linear_params(fresh["critic_target"]))
    key = "Q1.0.weight"
    torch.testing.assert_close(crit[key] - targ[key], 0.2 * (phi_c[key] - phi_t[key]), rtol=1e-5, atol=1e-6)


def test_perturbation_clears_optimizer_state_and_keeps_parameters(agent):
    torch.manual_seed(1)
    agent.update(make_batch(1), step=12)
    for opt in OPTS:
        state = getattr(agent, opt).state
        assert len(state) > 0 and all(int(s["step"]) == 1 for s in state.values()), opt
    params_before = {name: list(getattr(agent, name).parameters()) for name in NETS}
    agent.perturb()
    for opt in OPTS:
        assert len(getattr(agent, opt).state) == 0, opt
        assert getattr(agent, opt).state_dict()["state"] == {}, opt
    # The optimizers still hold the very parameter objects the networks use.
    for net, opt in (("actor", "actor_opt"), ("critic", "critic_opt"),
                     ("encoder", "encoder_opt"), ("value_predictor", "predictor_opt")):
        held = getattr(agent, opt).param_groups[0]["params"]
        assert all(a is b for a, b in zip(held, params_before[net]))
        assert all(a is b for a, b in zip(held, getattr(agent, net).parameters()))
    # Adam starts again from step 1 with fresh moments.
    agent.update(make_batch(2), step=14)
    for opt in OPTS:
        assert all(int(s["step"]) == 1 for s in getattr(agent, opt).state.values()), opt


def _snapshot(agent) -> dict:
    buf = io.BytesIO()
    torch.save(agent.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_snapshot_after_perturbation_resumes_exactly(agent, proto):
    script_beta(agent, [0.1, 0.1])  # awaken at step 12
    torch.manual_seed(2)
    agent.update(make_batch(1), step=12)
    agent.perturb()
    state = _snapshot(agent)
    assert state["dormant_ratio"] == 0.1 and state["awaken_step"] == 12 and state["perturb_count"] == 1
    assert state["predictor_opt"]["state"] == {} and "value_predictor" in state

    other = copy.deepcopy(proto)
    other.load_state_dict(state)
    assert (other.dormant_ratio, other.awaken_step, other.perturb_count) == (0.1, 12, 1)
    del agent.measure_dormant_ratio  # both measure for real from here
    for a in (agent, other):
        torch.manual_seed(3)
        a.update(make_batch(4), step=1000)  # a perturbation step, then a full update
    for name in NETS:
        for p, q in zip(getattr(agent, name).parameters(), getattr(other, name).parameters()):
            assert torch.equal(p, q), name
    assert agent.perturb_count == other.perturb_count == 2
    assert agent.dormant_ratio == other.dormant_ratio


# ---------------------------------------------------------------- awakening (2.4)
def test_awaken_step_recorded_once(agent):
    """num_expl_steps = 10, target 0.2, schedule linear(1.0,0.1,100)."""
    script_beta(agent, [0.1, 0.1, 0.3, 0.1, 0.05, 0.5])
    steps = [4, 10, 12, 14, 16, 18]
    seen, sigmas = [], []
    for i, step in enumerate(steps):
        metrics = agent.update(make_batch(i), step)
        seen.append(agent.awaken_step)
        sigmas.append(metrics["stddev"])
    # step 4 and 10 are not > num_expl_steps; 0.3 is not < 0.2; 0.1 at step 14 wakes it.
    assert seen == [None, None, None, 14, 14, 14]
    assert sigmas[:3] == pytest.approx([SIGMA[0.1], SIGMA[0.1], SIGMA[0.3]])
    assert sigmas[3] == pytest.approx(1.0)  # max(0.269, linear(0) = 1.0)
    assert sigmas[5] == pytest.approx(0.964)  # max(sigmoid(3) = 0.953, linear(4) = 1 - 0.9*0.04)
    # After t0: sigma = max(sigmoid(beta), linear(step - 14)).
    agent.dormant_ratio = 0.0
    assert agent.stddev(64) == pytest.approx(0.55)  # linear(50) = 0.55 > 0.119
    assert agent.stddev(1000) == pytest.approx(SIGMA[0.0])  # linear floor 0.1 < 0.119
    agent.dormant_ratio = 0.5
    assert agent.stddev(64) == pytest.approx(1 / (1 + math.exp(-3)))  # 0.953 > 0.55
    assert agent.log_state()["awaken_step"] == 14


def test_awaken_switch_off_uses_drqv2_schedule(agent):
    agent.use_awaken = False
    agent.dormant_ratio = 1.0
    assert agent.stddev(50) == pytest.approx(0.55)


# ---------------------------------------------------------------- exploitation (2.5)
def test_expectile_loss_weights():
    """V = [0, 4], Q = [1, 2]: V < Q by 1 gets weight tau, V > Q by 2 gets 1 - tau."""
    v = torch.tensor([[0.0], [4.0]], requires_grad=True)
    q = torch.tensor([[1.0], [2.0]])
    loss = expectile_loss(v, q, 0.9)
    assert loss.item() == pytest.approx((0.9 * 1 + 0.1 * 4) / 2)  # 0.65
    loss.backward()
    assert v.grad.flatten().tolist() == pytest.approx([0.9 * 2 * -1 / 2, 0.1 * 2 * 2 / 2])
    assert expectile_loss(v, q, 0.7).item() == pytest.approx((0.7 * 1 + 0.3 * 4) / 2)


def test_value_update_targets_min_q_at_replay_action(agent):
    obs, action = make_batch(5)[:2]
    features = agent.encoder(agent.aug(obs.float()))
    with torch.no_grad():
        q = torch.min(*agent.critic(features, action))
        expected = expectile_loss(agent.value_predictor(features), q, 0.9).item()
    critic_before = [p.clone() for p in agent.critic.parameters()]
    v_before = [p.clone() for p in agent.value_predictor.parameters()]
    metrics = agent.update_value(features.detach(), action)
    assert metrics["v_loss"] == pytest.approx(expected, rel=1e-6)
    assert all(p.grad is None for p in agent.encoder.parameters())  # detached features
    assert all(torch.equal(a, b) for a, b in zip(critic_before, agent.critic.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(v_before, agent.value_predictor.parameters()))


def test_blended_critic_target(agent):
    next_obs = make_batch(6)[4]
    with torch.no_grad():
        f = agent.encoder(next_obs.float())
        agent.dormant_ratio = 0.2  # lambda = 0.6 / 2 = 0.3
        torch.manual_seed(7)
        got = agent.critic_target_value(f, step=12)
        torch.manual_seed(7)
        a_next = agent.actor(f, agent.stddev(12)).sample(clip=0.3)
        min_q = torch.min(*agent.critic_target(f, a_next))
        v = agent.value_predictor(f)
        torch.testing.assert_close(got, 0.3 * v + 0.7 * min_q)
        agent.use_exploit = False  # ablation: DrQ-v2's target, lambda logged as 0
        torch.manual_seed(7)
        assert torch.equal(agent.critic_target_value(f, step=12), min_q)
        assert agent.exploit_lambda() == 0.0


# ---------------------------------------------------------------- one update (2.6)
def test_update_order(agent):
    """Perturbation at step % interval == 0 with the previous beta; lambda from this update's."""
    alphas = []
    real_perturb = agent.perturb
    agent.perturb = lambda: alphas.append(real_perturb())
    agent.dormant_ratio = 0.45  # previous update's beta: alpha = max(0.2, 1 - 0.9) = 0.2
    script_beta(agent, [0.1, 0.1, 0.1])
    metrics = agent.update(make_batch(7), step=1000)
    assert alphas == [pytest.approx(0.2)]
    assert metrics["actor_dormant_ratio"] == 0.1
    assert metrics["exploit_lambda"] == pytest.approx(LAMBDA[0.1])
    agent.update(make_batch(8), step=1002)  # not a multiple of the interval
    assert len(alphas) == 1
    agent.use_perturb = False
    agent.update(make_batch(9), step=2000)
    assert len(alphas) == 1 and agent.perturb_count == 1


def test_first_perturbation_uses_initial_ratio_one(proto):
    assert proto.dormant_ratio == 1.0 and proto.perturb_factor() == pytest.approx(0.2)


def test_log_columns_cover_metrics_and_state(agent):
    cols = agent.log_columns()
    for key in ("actor_dormant_ratio", "stddev", "exploit_lambda", "perturb_count",
                "awaken_step", "v_loss"):
        assert key in cols
    metrics = agent.update(make_batch(10), step=12)
    assert set(metrics) | set(agent.log_state()) == set(cols)
    agent.use_exploit = False
    assert math.isnan(agent.update(make_batch(11), step=14)["v_loss"])


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("key, value, allowed", [
    ("expectile", 0.0, "(0, 1)"), ("expectile", 1.0, "(0, 1)"), ("expectile", 1.5, "(0, 1)"),
    ("dormant_temp", -1.0, "[0, inf)"), ("lambda_temp", -50, "[0, inf)"),
    ("perturb_rate", -2, "[0, inf)"), ("target_dormant_ratio", 1.2, "[0, 1]"),
    ("target_lambda", 1.5, "[0, 1]"), ("max_perturb_factor", 1.1, "[0, 1]"),
    ("dormant_threshold", -0.1, "[0, 1]"), ("dormant_perturb_interval", 0, ">= 1"),
    ("perturb", "yes", "{true, false}"), ("expectile", float("nan"), "(0, 1)"),
])
def test_bad_values_refused(key, value, allowed):
    with pytest.raises(ValueError) as err:
        DrMAgent(**{**KW, key: value})
    message = str(err.value)
    assert f"agent.{key}={value!r}" in message and allowed in message


def test_min_above_max_perturb_factor_refused():
    with pytest.raises(ValueError, match=r"agent.min_perturb_factor=0.8 .*max_perturb_factor=0.5"):
        DrMAgent(**{**KW, "min_perturb_factor": 0.8, "max_perturb_factor": 0.5})


def test_unfilled_preset_refused():
    with pytest.raises(ValueError, match=r"agent.target_lambda is not set .*drm/cfg/tasks.yaml"):
        DrMAgent(**{**KW, "target_lambda": None})


def test_config_file_has_official_defaults():
    cfg = yaml.safe_load((REPO / "drm/cfg/agent/drm.yaml").read_text())
    assert cfg["name"] == "drm" and cfg["_target_"] == "drm.agent.DrMAgent"
    official = dict(dormant_threshold=0.025, target_dormant_ratio=0.2, dormant_temp=10,
                    lambda_temp=50, dormant_perturb_interval=100000, min_perturb_factor=0.2,
                    perturb_rate=2, expectile=0.9, hidden_dim=1024, critic_target_tau=0.01,
                    num_expl_steps=2000, stddev_clip=0.3, max_perturb_factor=None,
                    target_lambda=None, perturb=True, awaken=True, exploit=True)
    for key, value in official.items():
        assert cfg[key] == value, key
    params = set(inspect.signature(DrMAgent.__init__).parameters) - {
        "self", "obs_shape", "action_shape", "device", "dormant_ratio_fn"}
    assert cfg["replay_sample_running_episode"] is False  # the loop's key: DrM's loader
    assert set(cfg) - {"_target_", *LOOP_KEYS} == params


def test_presets_fill_the_per_task_keys():
    from drm.cell.presets import task_settings

    assert task_settings("drm", "humanoid_run")["agent.max_perturb_factor"] == 0.6
    assert task_settings("drm", "dog_trot")["agent.max_perturb_factor"] == 0.9
    assert task_settings("drm", "cheetah_run")["agent.max_perturb_factor"] == 1.0
    assert task_settings("drm", "cheetah_run")["agent.target_lambda"] == 0.6
