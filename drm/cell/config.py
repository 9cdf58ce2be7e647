"""Resolving and checking a training cell's config before anything expensive starts."""
import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from drm.cell import loggers, presets

CFG_DIR = Path(__file__).resolve().parents[1] / "cfg"



@dataclass(frozen=True)
class Networks:
    """What an agent trains beyond DrQ-v2's encoder, actor and critic: drm.cell.footprint sizes a
    snapshot from it without importing torch (tests/test_footprint.py checks it against the class)."""
    encoder_extra: int = 0  # parameters its encoder adds (A-LIX: its smoothing strength S)
    value_predictor: bool = False  # a value network: a trunk and an MLP to one output (DrM)


# The agent registry, one line per agent: its name, whose config is drm/cfg/agent/<name>.yaml
# (`_target_`: its class, a baselines.utils.Agent), and its Networks. The grid, the cell and the
# analysis read it.
AGENTS = {"drqv2": Networks(), "drm": Networks(value_predictor=True), "alix": Networks(encoder_extra=1)}
# Keys that may differ between the start and the resumption of one run (prefetch_batches gives
# the same batches either way; videos and loggers only watch the run).
# Threads and device only change the bits, not the experiment: a resumption that changes them is
# warned about (drm.cell.snapshot.compute_settings), not refused.
RESUME_MAY_CHANGE = ("out_dir", "device", "progress", "snapshot_every_frames", "threads",
                 "prefetch_batches", "save_video", "num_eval_videos", "loggers", "wandb_project")
_ABSENT = object()
# Hydra's grammar reads an unquoted `linear(1,0.1,500)` as a call of a function it lacks.
_SCHEDULE_KEYS = ("stddev_schedule", "agent.stddev_schedule")
_UNQUOTED_SCHEDULE = re.compile(r"(step_)?linear\(.*\)")


@lru_cache(maxsize=None)
def _config_file(name: str) -> dict:
    """A file of drm/cfg as plain data, parsed once per process."""
    return OmegaConf.to_container(OmegaConf.load(CFG_DIR / name), resolve=False)


@lru_cache(maxsize=None)
def _defaults(agent: str) -> dict:
    """An agent's config before the task, seed and overrides, merged once per process: the
    workflow composes a config per (agent, task, overrides), and parsing and merging the YAML
    files each time was most of its parse time."""
    base = dict(_config_file("config.yaml"))
    for key in ("defaults", "hydra"):
        base.pop(key)
    merged = OmegaConf.merge({"agent": _config_file(f"agent/{agent}.yaml")}, base)
    return OmegaConf.to_container(merged, resolve=False)


def known_keys(agent: str) -> list[str]:
    """Every key `python -m drm.train agent=<agent>` accepts, agent keys as `agent.<key>`."""
    base = _config_file("config.yaml")
    agent_keys = _config_file(f"agent/{agent}.yaml")
    return ([k for k in base if k not in ("defaults", "hydra")] + ["agent"]
            + [f"agent.{k}" for k in agent_keys])


def unknown_key_message(key: str, value, agent: str) -> str:
    others = [a for a in AGENTS if a != agent and key in known_keys(a)]
    close = difflib.get_close_matches(key, known_keys(agent), n=3, cutoff=0.75)
    hint = (f"; it is a key of agent {' and '.join(others)}, not of {agent}." if others
            else f"; did you mean {' or '.join(close)}?" if close else ".")
    return (f"unknown config key {key!r} (value {value!r}){hint} The keys are in "
            f"drm/cfg/config.yaml and drm/cfg/agent/{agent}.yaml")


def check_command_line(args: list[str]) -> list[str]:
    """The cell's arguments as Hydra should read them, checked before Hydra reads them.

    Hydra adds a `+key` it does not know silently (a typo would run a full cell without it),
    and parses an unquoted schedule as a function call; so unknown keys, with or without `+`,
    are refused here, a `+` before a known key is dropped, and schedules are quoted.
    Hydra's own flags (`--cfg job`, `-m`), `hydra.*` keys and group choices pass untouched.
    """
    agent = "drqv2"  # the default in drm/cfg/config.yaml
    for arg in args:
        if arg.startswith("agent="):
            agent = arg.split("=", 1)[1]
    if agent not in AGENTS:
        return list(args)  # Hydra names the agent files that exist
    known = set(known_keys(agent))
    checked = []
    for arg in args:
        if arg.startswith("-") or ("=" not in arg and not arg.startswith("~")):
            checked.append(arg)
            continue
        name, _, value = arg.partition("=")
        key = name.lstrip("+~")
        if key.startswith("hydra.") or key.startswith("hydra/") or "@" in key:
            checked.append(arg)
            continue
        if key not in known:
            raise ValueError(unknown_key_message(key, value, agent))
        if key in _SCHEDULE_KEYS and _UNQUOTED_SCHEDULE.fullmatch(value):
            value = f"'{value}'"
        checked.append(f"{name.lstrip('+')}={value}" if "=" in arg else arg)
    return checked


def resolve(cfg: DictConfig) -> DictConfig:
    """Fill keys left at null from the task's official settings; user values win."""
    from drm.cell.dmc import check_task

    if cfg.agent.name not in AGENTS:
        raise ValueError(f"unknown agent {cfg.agent.name!r}; valid agents: {', '.join(AGENTS)}")
    check_task(cfg.task)
    with open_dict(cfg):
        for key, value in presets.task_settings(cfg.agent.name, cfg.task).items():
            if OmegaConf.select(cfg, key) is None:
                OmegaConf.update(cfg, key, value, merge=False)
    OmegaConf.resolve(cfg)
    check(cfg)
    return cfg


def compose(agent: str, task: str, overrides: dict, seed: int = 1) -> DictConfig:
    """The resolved config `python -m drm.train agent=.. task=.. seed=.. key=value..` would run
    with, built without Hydra so the workflow can check every cell before submitting any."""
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; valid agents: {', '.join(AGENTS)}")
    cfg = OmegaConf.create(_defaults(agent))  # a fresh copy: it is changed below
    cfg.task, cfg.seed, cfg.out_dir = task, seed, "."
    OmegaConf.set_struct(cfg, True)
    for key, value in overrides.items():
        if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
            raise ValueError(unknown_key_message(key, value, agent))
        OmegaConf.update(cfg, key, value, merge=False)
    return resolve(cfg)


def _require(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value!r} is invalid: must be {allowed}")


def check_seed(seed) -> None:
    """The one check of a config that depends on its seed."""
    _require(isinstance(seed, int) and not isinstance(seed, bool), "seed", seed, "an integer")


def check_device(device) -> None:
    """Checked before the rest (drm.train needs the device to choose the rendering device)."""
    _require(str(device) in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", str(device)) is not None,
             "device", device, "auto, cpu, cuda or cuda:N (N a GPU index)")


def check(cfg: DictConfig) -> None:
    """Refuse impossible numbers with the key, the value and what would be accepted."""
    from baselines.schedule import check_schedule

    for key in ("num_train_frames", "eval_every_frames", "num_eval_episodes", "batch_size",
                "replay_buffer_size", "nstep", "action_repeat", "frame_stack", "episode_frames",
                "snapshot_every_frames", "update_every_steps", "feature_dim"):
        _require(isinstance(cfg[key], int) and cfg[key] >= 1, key, cfg[key], "an integer >= 1")
    check_seed(cfg.seed)
    _require(isinstance(cfg.num_seed_frames, int) and 0 <= cfg.num_seed_frames <= cfg.num_train_frames,
             "num_seed_frames", cfg.num_seed_frames,
             f"an integer in [0, num_train_frames={cfg.num_train_frames}]")
    _require(cfg.batch_size <= cfg.replay_buffer_size, "batch_size", cfg.batch_size,
             f"<= replay_buffer_size={cfg.replay_buffer_size}")
    _require(0.0 < cfg.discount <= 1.0, "discount", cfg.discount, "in (0, 1]")
    _require(cfg.lr > 0, "lr", cfg.lr, "> 0")
    _require(cfg.episode_frames % cfg.action_repeat == 0
             and cfg.episode_frames // cfg.action_repeat > cfg.nstep,
             "episode_frames", cfg.episode_frames,
             f"a multiple of action_repeat={cfg.action_repeat} longer than nstep={cfg.nstep} agent steps")
    check_device(cfg.device)
    _require(str(cfg.progress) in ("auto", "True", "False"), "progress", cfg.progress,
             "auto, true or false")
    for key in ("deterministic", "prefetch_batches", "save_video"):
        _require(isinstance(cfg[key], bool), key, cfg[key], "true or false")
    running = cfg.agent.replay_sample_running_episode
    _require(isinstance(running, bool), "agent.replay_sample_running_episode", running, "true or false")
    if not running:  # the first update needs an ended episode
        _require(cfg.num_seed_frames >= min(cfg.episode_frames, cfg.num_train_frames),
                 "num_seed_frames", cfg.num_seed_frames,
                 f">= episode_frames={cfg.episode_frames} when agent.replay_sample_running_episode="
                 "false (the first update samples an episode that has ended)")
    _require(isinstance(cfg.num_eval_videos, int) and cfg.num_eval_videos >= 1, "num_eval_videos",
             cfg.num_eval_videos, "an integer >= 1 (save_video=false for none)")
    loggers.check(cfg.loggers)
    _require(isinstance(cfg.wandb_project, str) and cfg.wandb_project.strip() != "", "wandb_project",
             cfg.wandb_project, "a W&B project name")
    _require(cfg.threads is None or (isinstance(cfg.threads, int) and cfg.threads >= 1),
             "threads", cfg.threads, "null or an integer >= 1")
    try:
        check_schedule(str(cfg.stddev_schedule))
    except ValueError as err:
        raise ValueError(f"stddev_schedule: {err}") from None


def comparable(cfg: DictConfig | dict) -> dict:
    """The part of a config that decides a run's results (what resuming must not change)."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    return {k: v for k, v in data.items() if k not in RESUME_MAY_CHANGE}


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} (on disk) vs {b!r} (now)")
    return out
