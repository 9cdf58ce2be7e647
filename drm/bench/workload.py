"""The benchmarks' one workload: DrQ-v2 at full size on cheetah_run's shapes, and a random batch."""
from __future__ import annotations

OBS, ACTION = (9, 84, 84), (6,)  # cheetah_run: 3 stacked 84x84 RGB frames, 6 actions


# DrQ-v2's official networks and settings for cheetah_run, shared by both agents.
SETTINGS = dict(lr=1e-4, feature_dim=50, hidden_dim=1024, critic_target_tau=0.01, num_expl_steps=0,
                stddev_schedule="linear(1.0,0.1,500000)", stddev_clip=0.3)


def drqv2_agent(device: str = "cpu", obs_shape=OBS, action_shape=ACTION):
    """DrQ-v2 with the official networks and its dormant ratio, as the cell builds it."""
    from baselines.drqv2 import DrQV2Agent
    from drm.dormant import dormant_ratio

    return DrQV2Agent(obs_shape=obs_shape, action_shape=action_shape, device=device,
                      dormant_ratio_fn=dormant_ratio, **SETTINGS)


def drm_agent(device: str = "cpu", obs_shape=OBS, action_shape=ACTION):
    """DrM with cheetah_run's settings (drm/cfg/tasks.yaml) on the same networks: its update adds
    the value predictor's fit and the blended target; no perturbation falls in a timed update."""
    from drm.agent import DrMAgent

    return DrMAgent(obs_shape=obs_shape, action_shape=action_shape, device=device,
                    max_perturb_factor=1.0, target_lambda=0.6, **SETTINGS)


def rebuild_adam(agent, **options):
    """A DrQ-v2 agent's three optimizers rebuilt as `torch.optim.Adam` with `options`, at their
    own learning rate (before any step: nothing is lost)."""
    import torch

    for name, net in (("encoder_opt", agent.encoder), ("actor_opt", agent.actor), ("critic_opt", agent.critic)):
        lr = getattr(agent, name).param_groups[0]["lr"]
        setattr(agent, name, torch.optim.Adam(net.parameters(), lr=lr, **options))
    return agent


def random_batch(n: int, obs_shape=OBS, action_shape=ACTION, seed: int | None = None):
    """(obs, action, reward, discount, next_obs) as the replay yields them; from torch's global
    generator unless `seed` is given."""
    import torch

    g = None if seed is None else torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, *obs_shape), dtype=torch.uint8, generator=g),
            torch.rand(n, *action_shape, generator=g) * 2 - 1, torch.rand(n, 1, generator=g),
            torch.full((n, 1), 0.97), torch.randint(0, 256, (n, *obs_shape), dtype=torch.uint8, generator=g))
