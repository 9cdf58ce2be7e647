"""DrM (Xu et al., ICLR 2024), as `XuGW-Kevin/DrM` (commit 317116a0, `agents/drm.py`) computes it.

Read next to docs/agents.md §2 and the paper's section 3. DrM is DrQ-v2 plus three
mechanisms, all driven by the actor's dormant ratio beta (drm/dormant.py):

1. perturbation: every `dormant_perturb_interval` agent steps, soft-reset the Linear layers
   towards a fresh init, the more so the more dormant the actor was (`perturb`);
2. awaken exploration: the exploration std is a sigmoid of beta until beta first falls below
   `target_dormant_ratio`, then at least DrQ-v2's linear schedule restarted there (`stddev`);
3. exploitation: a V network fitted by expectile regression to min(Q1, Q2) is blended into the
   critic target, with a weight lambda that switches on as beta falls (`critic_target_value`).

One `update` runs the official order (docs/agents.md §2.6): perturb, encode, beta and awakening,
V, critic, actor, target critic.
"""
import copy
import math

import torch
from torch import nn

from baselines import schedule, utils
from baselines.drqv2 import Actor, Critic, DrQV2Agent, Encoder, trunk
from drm.dormant import dormant_ratio as _dormant_ratio


class VNetwork(nn.Module):
    """V(s) on encoder features: its own trunk, then the same MLP shape as a Q head."""

    def __init__(self, repr_dim, feature_dim, hidden_dim):
        super().__init__()
        self.trunk = trunk(repr_dim, feature_dim)
        self.V = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, 1),
        )
        self.apply(utils.weight_init)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.V(self.trunk(obs))


def _exp(x: float) -> float:
    """math.exp, saturated instead of raising OverflowError for absurd temperatures."""
    return math.exp(min(x, 700.0))


def awaken_sigmoid(beta: float, target_dormant_ratio: float, dormant_temp: float) -> float:
    """sigma_dormant = 1 / (1 + exp(-dormant_temp * (beta - target))).

    Paper: 1 / (1 + exp(-(beta - target) / T)), so T = 1 / dormant_temp = 0.1. The repo's first
    commit multiplied this by 0.8; commit b082c2e (2024-01-18) made it 1, as here."""
    return 1.0 / (1.0 + _exp(-dormant_temp * (beta - target_dormant_ratio)))


def exploit_lambda(beta: float, target_lambda: float, target_dormant_ratio: float,
                   lambda_temp: float) -> float:
    """lambda = target_lambda / (1 + exp(lambda_temp * (beta - target))): about target_lambda
    once the actor is active (beta well below target), about 0 while it is dormant.

    Paper: lambda_hat / (1 + exp((beta - target) / T')), so T' = 1 / lambda_temp = 0.02."""
    return target_lambda / (1.0 + _exp(lambda_temp * (beta - target_dormant_ratio)))


def perturb_factor(beta: float, perturb_rate: float, min_factor: float, max_factor: float) -> float:
    """alpha = clip(1 - perturb_rate * beta, min, max): the share of the old weights kept.

    Written as the code does, min(max(min_factor, 1 - k*beta), max_factor), so max wins if the
    two bounds ever crossed (validation refuses that)."""
    return min(max(min_factor, 1.0 - perturb_rate * beta), max_factor)


def expectile_loss(v: torch.Tensor, q: torch.Tensor, expectile: float) -> torch.Tensor:
    """mean(w * (V - Q)^2), w = expectile where V <= Q and 1 - expectile where V > Q, so
    with expectile 0.9 V is pushed towards an upper expectile of Q (IQL's value loss)."""
    err = v - q
    above = (err > 0).float()
    weight = (1 - above) * expectile + above * (1 - expectile)
    return (weight * err.pow(2)).mean()


@torch.no_grad()
def perturb_network(net: nn.Module, optimizer: torch.optim.Optimizer | None, alpha: float) -> nn.Module:
    """Soft reset (DrM `utils.perturb`): theta <- alpha * theta + (1 - alpha) * phi for every
    parameter of every nn.Linear, phi from a deep copy of `net` re-initialised with DrQ-v2's
    `weight_init` (orthogonal weights, zero biases: biases just shrink by alpha). Everything
    else (LayerNorm, conv layers) is left as it is, and the optimizer's state (Adam moments and
    step counts) is emptied, as the code's `optimizer.state = defaultdict(dict)` does; Adam
    re-creates it lazily and an empty state round-trips through `state_dict`.

    Parameters keep their identity (the optimizer still holds them). Returns the fresh copy."""
    fresh = copy.deepcopy(net)
    fresh.apply(utils.weight_init)
    for module, fresh_module in zip(net.modules(), fresh.modules()):
        if isinstance(module, nn.Linear):
            for param, new in zip(module.parameters(recurse=False),
                                  fresh_module.parameters(recurse=False)):
                param.copy_(param * alpha + new * (1 - alpha))
    if optimizer is not None:
        optimizer.state.clear()
    return fresh


def _refuse(key: str, value, allowed: str):
    raise ValueError(f"agent.{key}={value!r} is outside its allowed range {allowed}")


def _check_range(key, value, low, high, low_open=False, high_open=False):
    """Refuse `value` unless it is a number in the interval; NaN fails every comparison."""
    allowed = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if value is None:
        raise ValueError(
            f"agent.{key} is not set (null); allowed range {allowed}. "
            "A null is filled from the task's settings in drm/cfg/tasks.yaml by the training loop.")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _refuse(key, value, allowed)
    ok_low = value > low if low_open else value >= low
    ok_high = value < high if high_open else value <= high
    if not (ok_low and ok_high):
        _refuse(key, value, allowed)


class DrMAgent(DrQV2Agent):
    """DrQ-v2 plus DrM. `perturb`, `awaken` and `exploit` switch each mechanism off for the
    paper's ablation (off: no perturbation; DrQ-v2's schedule; DrQ-v2's target and no V fit)."""

    STATE_SCALARS = DrQV2Agent.STATE_SCALARS + ("dormant_ratio", "awaken_step", "perturb_count")

    def __init__(
        self, obs_shape, action_shape, device, lr, feature_dim, hidden_dim,
        critic_target_tau, num_expl_steps, stddev_schedule, stddev_clip,
        dormant_threshold=0.025, target_dormant_ratio=0.2, dormant_temp=10.0,
        lambda_temp=50.0, dormant_perturb_interval=100_000, min_perturb_factor=0.2,
        max_perturb_factor=None, perturb_rate=2.0, expectile=0.9, target_lambda=None,
        perturb=True, awaken=True, exploit=True, dormant_ratio_fn=None,
    ):
        # Refuse bad values before any network is built, so a bad run stops before training.
        _check_range("dormant_threshold", dormant_threshold, 0, 1)
        _check_range("target_dormant_ratio", target_dormant_ratio, 0, 1)
        _check_range("dormant_temp", dormant_temp, 0, math.inf, high_open=True)
        _check_range("lambda_temp", lambda_temp, 0, math.inf, high_open=True)
        if isinstance(dormant_perturb_interval, bool) or not isinstance(dormant_perturb_interval, int) \
                or dormant_perturb_interval < 1:
            _refuse("dormant_perturb_interval", dormant_perturb_interval, "integers >= 1 (agent steps)")
        _check_range("min_perturb_factor", min_perturb_factor, 0, 1)
        _check_range("max_perturb_factor", max_perturb_factor, 0, 1)
        if min_perturb_factor > max_perturb_factor:
            _refuse("min_perturb_factor", min_perturb_factor,
                    f"[0, agent.max_perturb_factor={max_perturb_factor!r}] (min must not exceed max)")
        _check_range("perturb_rate", perturb_rate, 0, math.inf, high_open=True)
        _check_range("expectile", expectile, 0, 1, low_open=True, high_open=True)
        _check_range("target_lambda", target_lambda, 0, 1)
        for key, value in (("perturb", perturb), ("awaken", awaken), ("exploit", exploit)):
            if not isinstance(value, bool):
                _refuse(key, value, "{true, false}")

        super().__init__(
            obs_shape, action_shape, device, lr, feature_dim, hidden_dim, critic_target_tau,
            num_expl_steps, stddev_schedule, stddev_clip, dormant_threshold,
            dormant_ratio_fn if dormant_ratio_fn is not None else _dormant_ratio,
        )
        self.target_dormant_ratio = float(target_dormant_ratio)
        self.dormant_temp = float(dormant_temp)
        self.lambda_temp = float(lambda_temp)
        self.dormant_perturb_interval = dormant_perturb_interval
        self.min_perturb_factor = float(min_perturb_factor)
        self.max_perturb_factor = float(max_perturb_factor)
        self.perturb_rate = float(perturb_rate)
        self.expectile = float(expectile)
        self.target_lambda = float(target_lambda)
        self.use_perturb, self.use_awaken, self.use_exploit = perturb, awaken, exploit

        # beta starts at 1 (fully dormant): until the first update sigma is ~1, and a
        # perturbation in the very first update uses alpha = min_perturb_factor.
        self.dormant_ratio = 1.0
        self.awaken_step: int | None = None  # t0, the agent step the actor first woke up
        self.perturb_count = 0

        self.predictor_opt = utils.adam(self.value_predictor.parameters(), lr)

    def build_networks(self, obs_shape, action_shape, feature_dim, hidden_dim) -> None:
        """The official order: encoder, actor, V, critic, target (a fresh critic given the
        critic's weights), so the same seed gives the official initial weights and leaves
        torch's generator where the official one is for the first perturbation's draws."""
        self.encoder = Encoder(obs_shape)
        repr_dim = self.encoder.repr_dim
        self.actor = Actor(repr_dim, action_shape, feature_dim, hidden_dim)
        self.value_predictor = VNetwork(repr_dim, feature_dim, hidden_dim)
        self.critic = Critic(repr_dim, action_shape, feature_dim, hidden_dim)
        self.critic_target = Critic(repr_dim, action_shape, feature_dim, hidden_dim)
        self.critic_target.load_state_dict(self.critic.state_dict())

    def train(self, training: bool = True) -> None:
        super().train(training)
        self.value_predictor.train(training)

    # ---- the three schedules, functions of the current beta -----------------------------
    def stddev(self, step: int) -> float:
        """Awaken exploration (code's `stddev_type: awake`): the sigmoid of beta until the
        awakening, then max(sigmoid, DrQ-v2 schedule counted from t0). The same value serves
        acting, target smoothing and the actor update. Off: DrQ-v2's schedule."""
        if not self.use_awaken:
            return schedule.schedule(self.stddev_schedule, step)
        sigma = awaken_sigmoid(self.dormant_ratio, self.target_dormant_ratio, self.dormant_temp)
        if self.awaken_step is None:
            return sigma
        return max(sigma, schedule.schedule(self.stddev_schedule, step - self.awaken_step))

    def exploit_lambda(self) -> float:
        if not self.use_exploit:
            return 0.0
        return exploit_lambda(self.dormant_ratio, self.target_lambda,
                              self.target_dormant_ratio, self.lambda_temp)

    def perturb_factor(self) -> float:
        return perturb_factor(self.dormant_ratio, self.perturb_rate,
                              self.min_perturb_factor, self.max_perturb_factor)

    # ---- mechanism 1: perturbation ------------------------------------------------------
    def perturb(self) -> float:
        """Soft-reset actor, critic, critic target and V with one alpha from the previous
        update's beta. Each `perturb` call draws its own fresh init, so the target gets a draw
        of its own and differs from the critic afterwards. The official code also passes the
        encoder: it has no Linear layer, so its conv weights stay as they are (we make the same
        call, which keeps the code's random draws and wipes the encoder's Adam state)."""
        alpha = self.perturb_factor()
        perturb_network(self.actor, self.actor_opt, alpha)
        perturb_network(self.critic, self.critic_opt, alpha)
        perturb_network(self.critic_target, None, alpha)  # the code passes critic_opt again: no-op
        perturb_network(self.encoder, self.encoder_opt, alpha)
        perturb_network(self.value_predictor, self.predictor_opt, alpha)
        self.perturb_count += 1
        return alpha

    # ---- mechanism 2: awakening (the schedule itself is `stddev`) -----------------------
    def note_awakening(self, step: int) -> None:
        """t0 is the first update after the uniform-exploration phase with beta < target;
        it is recorded once and never moves."""
        if (self.awaken_step is None and step > self.num_expl_steps
                and self.dormant_ratio < self.target_dormant_ratio):
            self.awaken_step = step

    # ---- mechanism 3: exploitation ------------------------------------------------------
    def update_value(self, obs: torch.Tensor, action: torch.Tensor) -> dict:
        """Expectile-regress V(s) on min(Q1, Q2)(s, a) at the replay action, on detached
        features. The code leaves Q attached, but the stray critic gradients are discarded by
        the critic's zero_grad before its own step, so computing Q without gradients is the
        same update, cheaper."""
        with torch.no_grad():
            q1, q2 = self.critic(obs, action)
            q = torch.min(q1, q2)
        v_loss = expectile_loss(self.value_predictor(obs), q, self.expectile)
        self.predictor_opt.zero_grad(set_to_none=True)
        v_loss.backward()
        self.predictor_opt.step()
        return {"v_loss": v_loss.detach()}

    def critic_target_value(self, next_obs, step: int) -> torch.Tensor:
        """lambda * V(s') + (1 - lambda) * min(Q1', Q2')(s', a'), V the online V network,
        lambda from this update's beta. With exploitation off it is DrQ-v2's min Q'."""
        explore = super().critic_target_value(next_obs, step)
        if not self.use_exploit:
            return explore
        lam = self.exploit_lambda()
        return lam * self.value_predictor(next_obs) + (1 - lam) * explore

    # ---- one update, in the official order (docs/agents.md §2.6) ------------------------------
    def update_on_device(self, batch, step: int) -> dict:
        if self.use_perturb and step % self.dormant_perturb_interval == 0:
            self.perturb()  # uses the previous update's beta
        obs, action, reward, discount, next_obs = self.encode_batch(batch)
        # The update's one mid-way host sync: beta sets this update's stddev and lambda.
        self.dormant_ratio = float(self.measure_dormant_ratio(obs.detach()))
        self.note_awakening(step)
        metrics = {"actor_dormant_ratio": self.dormant_ratio, "batch_reward": reward.mean()}
        if self.use_exploit:
            metrics.update(self.update_value(obs.detach(), action))
        else:
            metrics["v_loss"] = float("nan")
        metrics.update(self.update_critic(obs, action, reward, discount, next_obs, step))
        metrics.update(self.update_actor(obs.detach(), step))
        utils.soft_update_params(self.critic, self.critic_target, self.critic_target_tau)
        metrics["exploit_lambda"] = self.exploit_lambda()
        return metrics

    # ---- what train.csv shows -----------------------------------------------------------
    def log_columns(self) -> tuple:
        return super().log_columns() + ("v_loss", "exploit_lambda", "perturb_count", "awaken_step")

    def log_state(self) -> dict:
        """Scalars read at each episode end; awaken_step is NaN until the actor wakes up."""
        return {
            **super().log_state(),
            "perturb_count": self.perturb_count,
            "awaken_step": float("nan") if self.awaken_step is None else self.awaken_step,
        }
