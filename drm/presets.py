"""Per-task settings from the official repos, filled into the keys a user left at `null`.

DrQ-v2 and A-LIX take `facebookresearch/drqv2`'s tiers and overrides (A-LIX's task configs are
byte-identical to DrQ-v2's). DrM takes `XuGW-Kevin/DrM`'s table (agents.md 2.7). On tasks
DrQ-v2's repo has no config for (dog, manipulator, acrobot_swingup_sparse), the baselines take
DrM's task settings, as the DrQ-v2 agent inside the DrM repo does. A task neither repo
configures gets DrQ-v2's defaults and the medium tier.
"""

TIERS = {  # stddev_schedule durations are agent steps (2 frames each)
    "easy": {"num_train_frames": 1_100_000, "stddev_schedule": "linear(1.0,0.1,100000)"},
    "medium": {"num_train_frames": 3_100_000, "stddev_schedule": "linear(1.0,0.1,500000)"},
    "hard": {"num_train_frames": 30_100_000, "stddev_schedule": "linear(1.0,0.1,2000000)"},
}

DEFAULTS = {"lr": 1.0e-4, "feature_dim": 50, "batch_size": 256, "nstep": 3,
            "replay_buffer_size": 1_000_000}

_HUMANOID = {"lr": 8.0e-5, "feature_dim": 100}
_WALKER = {"nstep": 1, "batch_size": 512}

DRQV2_TASKS = {
    **{t: ("easy", {}) for t in [
        "cartpole_balance", "cartpole_balance_sparse", "cartpole_swingup", "cup_catch",
        "finger_spin", "hopper_stand", "pendulum_swingup"]},
    "walker_stand": ("easy", _WALKER),
    "walker_walk": ("easy", _WALKER),
    **{t: ("medium", {}) for t in [
        "acrobot_swingup", "cartpole_swingup_sparse", "cheetah_run", "finger_turn_easy",
        "finger_turn_hard", "hopper_hop", "quadruped_walk", "reach_duplo", "reacher_easy",
        "reacher_hard"]},
    "quadruped_run": ("medium", {"replay_buffer_size": 100_000}),
    "walker_run": ("medium", _WALKER),
    **{t: ("hard", _HUMANOID) for t in ["humanoid_stand", "humanoid_walk", "humanoid_run"]},
}


def _drm(tier, max_perturb_factor, **overrides):
    return tier, {**overrides, "agent.max_perturb_factor": max_perturb_factor,
                  "agent.target_lambda": 0.6}


_DOG = {"lr": 8.0e-5, "feature_dim": 100}
DRM_TASKS = {
    "acrobot_swingup": _drm("medium", 1.0),
    "acrobot_swingup_sparse": _drm("hard", 0.9),
    "cartpole_swingup_sparse": _drm("medium", 1.0),
    "cheetah_run": _drm("medium", 1.0),
    "hopper_hop": _drm("medium", 1.0),
    "quadruped_run": _drm("medium", 1.0, replay_buffer_size=100_000),
    "quadruped_walk": _drm("medium", 1.0, replay_buffer_size=100_000),
    "reacher_easy": _drm("medium", 1.0),
    "reacher_hard": _drm("medium", 1.0),
    "walker_run": _drm("medium", 1.0, batch_size=512),
    "dog_stand": _drm("hard", 0.6, **_DOG),
    "dog_walk": _drm("hard", 0.6, **_DOG),
    "dog_run": _drm("hard", 0.6, **_DOG),
    "dog_trot": _drm("hard", 0.9, **_DOG),
    "humanoid_run": _drm("hard", 0.6, **_DOG),
    "humanoid_stand": _drm("hard", 0.9, **_DOG),
    "humanoid_walk": _drm("hard", 0.9, **_DOG),
    "manipulator_bring_ball": _drm("hard", 0.9, lr=8.0e-5, feature_dim=50),
}
# The DrM agent defaults for tasks DrM's repo does not configure (its first commit's global value).
DRM_FALLBACK = {"agent.max_perturb_factor": 0.9, "agent.target_lambda": 0.6}


def task_settings(agent: str, task: str) -> dict:
    """The dotted-key settings of one (agent, task) cell, before any user override."""
    if agent == "drm":
        tier, overrides = DRM_TASKS.get(task) or DRQV2_TASKS.get(task, ("medium", {}))
        overrides = {**DRM_FALLBACK, **overrides}
    else:
        tier, overrides = DRQV2_TASKS.get(task) or _baseline_view(DRM_TASKS.get(task))
    return {**DEFAULTS, **TIERS[tier], **overrides}


def _baseline_view(drm_entry):
    if drm_entry is None:
        return "medium", {}
    tier, overrides = drm_entry
    return tier, {k: v for k, v in overrides.items() if not k.startswith("agent.")}
