"""The actor dormant ratio (drm/dormant.py) against counts done by hand (docs/agents.md §2.2).

Official rule: every nn.Linear counts (output layer included); per unit m_i = mean over the
batch of |h_i|; dormant iff m_i < tau * mean_i(m_i) (strict); hidden layers are seen after
their in-place ReLU, the trunk Linear before LayerNorm, the output Linear before tanh.
"""
import torch
from torch import nn

from baselines.drqv2 import Actor
from drm.dormant import dormant_ratio, measured_modules


def _hand_net() -> nn.Sequential:
    """2 inputs -> 4 hidden (ReLU) -> 2 outputs, weights set so every mean is a small integer.

    Batch x = e1, e2. Hidden pre-activations (same for both samples, zero biases):
      unit0 row [5, 5]   -> 5, 5    post-ReLU mean 5
      unit1 row [2, 2]   -> 2, 2    mean 2
      unit2 row [1, 1]   -> 1, 1    mean 1
      unit3 row [-3, -1] -> -3, -1  post-ReLU 0
    layer mean = (5+2+1+0)/4 = 2; tau = 0.5 -> threshold 1.0:
      unit3 (0 < 1) dormant; unit2 (1 is not < 1) NOT dormant, exactly at the threshold.
    Outputs from h = [5, 2, 1, 0]: out0 row [1,0,0,0] -> 5; out1 row [-0.2,0,0,0] -> -1 (|.| 1).
    layer mean = 3, threshold 1.5: out1 dormant, out0 live.
    Total: 2 dormant of 6 units.
    """
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(inplace=True), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[5.0, 5.0], [2.0, 2.0], [1.0, 1.0], [-3.0, -1.0]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [-0.2, 0, 0, 0]]))
        net[2].bias.zero_()
    return net


X = torch.eye(2)


def test_hand_counted_network():
    assert dormant_ratio(_hand_net(), (X,), 0.5) == 2 / 6


def test_unit_exactly_at_threshold_is_not_dormant():
    # With the paper's <= unit2 (mean exactly 1.0 = 0.5 * 2) would count too: 3/6.
    assert dormant_ratio(_hand_net(), (X,), 0.5) != 3 / 6
    # Three identical units, tau = 1: each mean equals the threshold -> none dormant.
    net = nn.Linear(1, 3)
    with torch.no_grad():
        net.weight.fill_(1.0)
        net.bias.zero_()
    assert dormant_ratio(net, (torch.ones(2, 1),), 1.0) == 0.0
    assert dormant_ratio(net, (torch.ones(2, 1),), 1.0 + 1e-6) == 1.0


def test_hidden_layers_measured_after_relu():
    net = _hand_net()
    assert measured_modules(net) == [net[1], net[2]]  # the ReLU stands for the hidden Linear
    # One Linear(1, 2) + in-place ReLU on x = 1, 1: unit0 -> 1, 1; unit1 -> -1, -1.
    # After the ReLU the means are [1, 0], threshold 0.5 * 0.5 = 0.25: unit1 dormant, 1/2.
    # Before it both means are 1 and nothing would be dormant (0/2).
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(inplace=True))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[0].bias.zero_()
    assert dormant_ratio(net, (torch.ones(2, 1),), 0.5) == 1 / 2


def test_relu_dead_unit_counts_even_with_no_zero_weights():
    """A unit with large weights whose pre-activation is always negative is dormant."""
    net = _hand_net()
    with torch.no_grad():
        net[0].weight[3] = torch.tensor([-100.0, -100.0])
    assert dormant_ratio(net, (X,), 0.5) == 2 / 6


def _official_replica(actor: nn.Module, obs: torch.Tensor, tau: float) -> float:
    """The official `utils.cal_dormant_ratio` logic: hook every Linear's output tensor; the
    in-place ReLUs then overwrite the hidden ones."""
    outputs, hooks = [], []
    linears = [m for m in actor.modules() if isinstance(m, nn.Linear)]
    for m in linears:
        hooks.append(m.register_forward_hook(lambda _m, _i, out: outputs.append(out)))
    with torch.no_grad():
        actor(obs, 0)
    for h in hooks:
        h.remove()
    dormant = total = 0
    for m, out in zip(linears, outputs):
        mean_output = out.abs().mean(0)
        dormant += int((mean_output < mean_output.mean() * tau).sum())
        total += m.weight.shape[0]
    return dormant / total


def _by_hand(actor: Actor, obs: torch.Tensor, tau: float) -> tuple[int, int]:
    """The actor's forward pass written out, layer by layer, with the dormant test applied to
    trunk pre-LayerNorm, both hidden layers post-ReLU and the output pre-tanh."""
    lin0, ln, pol = actor.trunk[0], actor.trunk[1], actor.policy
    z0 = obs @ lin0.weight.T + lin0.bias
    h = torch.tanh(ln(z0))
    z1 = torch.relu(h @ pol[0].weight.T + pol[0].bias)
    z2 = torch.relu(z1 @ pol[2].weight.T + pol[2].bias)
    z3 = z2 @ pol[4].weight.T + pol[4].bias
    dormant = total = 0
    for z in (z0, z1, z2, z3):
        m = z.abs().mean(0)
        dormant += int((m < tau * m.mean()).sum())
        total += m.numel()
    return dormant, total


def test_drqv2_actor_layout():
    """feature_dim 3 + hidden 5 + hidden 5 + |A| 2 = 15 units; 5 are killed by hand:
    trunk unit 0 (zero row), 2 units of hidden 1 and 1 of hidden 2 (bias -1000: ReLU-dead),
    output unit 1 (zero row)."""
    torch.manual_seed(0)
    actor = Actor(repr_dim=6, action_shape=(2,), feature_dim=3, hidden_dim=5)
    with torch.no_grad():
        actor.trunk[0].weight[0].zero_()
        actor.policy[0].bias[:2] = -1000.0
        actor.policy[2].bias[4] = -1000.0
        actor.policy[4].weight[1].zero_()
    obs = torch.randn(64, 6)
    tau = 0.025
    dormant, total = _by_hand(actor, obs, tau)
    assert total == 15
    assert dormant == 5  # the live units are well above 2.5% of their layer mean
    ratio = dormant_ratio(actor, (obs, 0.0), tau)
    assert ratio == dormant / 15
    assert ratio == _official_replica(actor, obs, tau)
    assert measured_modules(actor) == [actor.trunk[0], actor.policy[1], actor.policy[3], actor.policy[4]]
