"""DrQ-v2 (Yarats et al., 2021), as `facebookresearch/drqv2` (commit c0c650b7) computes it.

Read next to docs/agents.md §1. Shapes: obs are uint8 (9, 84, 84) frame stacks; the encoder
maps them to 32*35*35 = 39,200 features shared by actor and critic; only the critic loss
trains the encoder.
"""
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines import schedule, utils


class Encoder(nn.Module):
    def __init__(self, obs_shape):
        super().__init__()
        assert len(obs_shape) == 3
        self.repr_dim = 32 * 35 * 35
        # The ReLUs overwrite their conv's output (the official ones allocate a new tensor): a
        # conv's backward needs its input, not its output, so the numbers are the same.
        self.convnet = nn.Sequential(
            nn.Conv2d(obs_shape[0], 32, 3, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(inplace=True),
        )
        self.apply(utils.weight_init)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.convnet(utils.normalize_pixels(obs))
        return h.view(h.shape[0], -1)


def trunk(repr_dim: int, feature_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


class Actor(nn.Module):
    def __init__(self, repr_dim, action_shape, feature_dim, hidden_dim):
        super().__init__()
        self.trunk = trunk(repr_dim, feature_dim)
        self.policy = mlp(feature_dim, hidden_dim, action_shape[0])
        self.apply(utils.weight_init)

    def forward(self, obs: torch.Tensor, std: float) -> utils.TruncatedNormal:
        mu = torch.tanh(self.policy(self.trunk(obs)))
        return utils.TruncatedNormal(mu, torch.ones_like(mu) * std)


class Critic(nn.Module):
    """Two independent Q heads on one trunk (clipped double Q)."""

    def __init__(self, repr_dim, action_shape, feature_dim, hidden_dim):
        super().__init__()
        self.trunk = trunk(repr_dim, feature_dim)
        self.Q1 = mlp(feature_dim + action_shape[0], hidden_dim, 1)
        self.Q2 = mlp(feature_dim + action_shape[0], hidden_dim, 1)
        self.apply(utils.weight_init)

    def forward(self, obs: torch.Tensor, action: torch.Tensor):
        h_action = torch.cat([self.trunk(obs), action], dim=-1)
        return self.Q1(h_action), self.Q2(h_action)


DormantRatioFn = Callable[[nn.Module, tuple, float], float]


class DrQV2Agent(utils.Agent):
    """The loop calls `update` every `update_every_steps` agent steps once the seed frames are in;
    `dormant_ratio_fn` (given by the loop) measures the actor on the update's own features."""

    def __init__(
        self, obs_shape, action_shape, device, lr, feature_dim, hidden_dim,
        critic_target_tau, num_expl_steps, stddev_schedule, stddev_clip,
        dormant_threshold=0.025, dormant_ratio_fn: DormantRatioFn | None = None,
    ):
        self.device = torch.device(device)
        self.critic_target_tau = critic_target_tau
        self.num_expl_steps = num_expl_steps
        self.stddev_schedule = stddev_schedule
        self.stddev_clip = stddev_clip
        self.dormant_threshold = dormant_threshold
        self.dormant_ratio_fn = dormant_ratio_fn

        self.build_networks(obs_shape, action_shape, feature_dim, hidden_dim)
        for net in self.networks():
            net.to(self.device)

        self.encoder_opt = self.make_encoder_optimizer(lr)
        self.actor_opt = utils.adam(self.actor.parameters(), lr)
        self.critic_opt = utils.adam(self.critic.parameters(), lr)
        self.aug = self.make_augmentation()
        self.train()

    def build_networks(self, obs_shape, action_shape, feature_dim, hidden_dim) -> None:
        """Build the networks in the official constructor's order, so that the same seed gives
        the official initial weights (every constructor and init draws from torch's global
        generator): encoder, actor, critic, then the target as a fresh critic given the
        critic's weights. Subclasses build in their official code's order."""
        self.encoder = Encoder(obs_shape)
        repr_dim = self.encoder.repr_dim
        self.actor = Actor(repr_dim, action_shape, feature_dim, hidden_dim)
        self.critic = Critic(repr_dim, action_shape, feature_dim, hidden_dim)
        self.critic_target = Critic(repr_dim, action_shape, feature_dim, hidden_dim)
        self.critic_target.load_state_dict(self.critic.state_dict())

    def networks(self) -> list[nn.Module]:
        return [obj for obj in vars(self).values() if isinstance(obj, nn.Module)]

    # Subclasses (A-LIX) swap these parts.
    def make_encoder_optimizer(self, lr) -> torch.optim.Optimizer:
        return utils.adam(self.encoder.parameters(), lr)

    def make_augmentation(self) -> nn.Module:
        return utils.RandomShiftsAug(pad=4)

    def train(self, training: bool = True) -> None:
        self.training = training
        for module in (self.encoder, self.actor, self.critic):
            module.train(training)

    def log_columns(self) -> tuple[str, ...]:
        """train.csv columns: update metrics (averaged over an episode) and `log_state` keys."""
        return ("actor_dormant_ratio", "batch_reward", "critic_loss", "critic_q1", "critic_q2",
                "critic_target_q", "actor_loss", "stddev")

    def log_state(self) -> dict:
        """Scalars read once at each episode end (subclasses add theirs)."""
        return {}

    def stddev(self, step: int) -> float:
        return schedule.schedule(self.stddev_schedule, step)

    @torch.no_grad()
    def act(self, obs: np.ndarray, step: int, eval_mode: bool) -> np.ndarray:
        """Acting runs the networks in eval mode, as DrQ-v2's `utils.eval_mode(agent)` does."""
        was_training = self.training
        self.train(False)
        try:
            obs = torch.as_tensor(obs, device=self.device).unsqueeze(0)
            dist = self.actor(self.encoder(obs), self.stddev(step))
            if eval_mode:
                action = dist.mean
            else:
                action = dist.sample(clip=None)
                if step < self.num_expl_steps:
                    action.uniform_(-1.0, 1.0)
        finally:
            self.train(was_training)
        return action.cpu().numpy()[0]

    def encode_batch(self, batch):
        """Augment obs and next_obs independently; next_obs is encoded without gradients.
        The crop runs on the uint8 images and the encoder converts them to float: the official
        order (`aug(obs.float())`) gives the same numbers, moving four times the bytes."""
        obs, action, reward, discount, next_obs = (t.to(self.device) for t in batch)
        obs = self.encoder(self.aug(obs))
        with torch.no_grad():
            next_obs = self.encoder(self.aug(next_obs))
        return obs, action, reward, discount, next_obs

    def measure_dormant_ratio(self, obs_features: torch.Tensor) -> torch.Tensor | float:
        """A 0-d float64 tensor on the agent's device (no host sync), NaN without a function."""
        if self.dormant_ratio_fn is None:
            return float("nan")
        return self.dormant_ratio_fn(self.actor, (obs_features, 0.0), self.dormant_threshold)

    def update(self, batch, step: int) -> dict:
        """One update; its metrics as Python floats, read back in one transfer at the end."""
        return utils.metrics_to_host(self.update_on_device(batch, step))

    def update_on_device(self, batch, step: int) -> dict:
        """The update itself; metrics stay tensors on the agent's device (no host sync)."""
        obs, action, reward, discount, next_obs = self.encode_batch(batch)
        metrics = {"actor_dormant_ratio": self.measure_dormant_ratio(obs.detach()),
                   "batch_reward": reward.mean()}
        metrics.update(self.update_critic(obs, action, reward, discount, next_obs, step))
        metrics.update(self.update_actor(obs.detach(), step))
        utils.soft_update_params(self.critic, self.critic_target, self.critic_target_tau)
        return metrics

    def critic_target_value(self, next_obs, step: int) -> torch.Tensor:
        """min(Q1', Q2') at a clip-noised next action (clipped double Q)."""
        dist = self.actor(next_obs, self.stddev(step))
        next_action = dist.sample(clip=self.stddev_clip)
        target_q1, target_q2 = self.critic_target(next_obs, next_action)
        return torch.min(target_q1, target_q2)

    def update_critic(self, obs, action, reward, discount, next_obs, step: int) -> dict:
        with torch.no_grad():
            target_q = reward + discount * self.critic_target_value(next_obs, step)
        q1, q2 = self.critic(obs, action)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.encoder_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        self.encoder_opt.step()
        return {  # tensors: `update` reads every metric back at once
            "critic_loss": critic_loss.detach(),
            "critic_q1": q1.detach().mean(),
            "critic_q2": q2.detach().mean(),
            "critic_target_q": target_q.mean(),
        }

    def update_actor(self, obs, step: int) -> dict:
        dist = self.actor(obs, self.stddev(step))
        action = dist.sample(clip=self.stddev_clip)
        q1, q2 = self.critic(obs, action)
        actor_loss = -torch.min(q1, q2).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        return {"actor_loss": actor_loss.detach(), "stddev": self.stddev(step)}
