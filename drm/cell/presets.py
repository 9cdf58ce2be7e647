"""Per-task settings from the official repos (drm/cfg/tasks.yaml says which and why), filled
into the keys a cell leaves at null."""
from functools import lru_cache
from pathlib import Path

import yaml

TASKS_FILE = Path(__file__).resolve().parents[1] / "cfg" / "tasks.yaml"


@lru_cache(maxsize=None)
def tables() -> dict:
    return yaml.safe_load(TASKS_FILE.read_text())


def configured_tasks() -> frozenset[str]:
    """The Control Suite tasks this file configures (tests/test_grid.py checks them against
    dm_control), so that checking one needs no import of dm_control."""
    t = tables()
    return (frozenset(t["drqv2"]) | frozenset(t["drm"])) - frozenset(t["outside_suite"])


def task_settings(agent: str, task: str) -> dict:
    """The dotted-key settings of one (agent, task) cell, before any user override."""
    t = tables()
    if agent == "drm":
        entry = {**t["drm_defaults"], **(t["drm"].get(task) or t["drqv2"].get(task) or {})}
    else:
        entry = t["drqv2"].get(task) or {k: v for k, v in t["drm"].get(task, {}).items()
                                          if not k.startswith("agent.")}
    entry = dict(entry)
    tier = entry.pop("tier", "medium")
    return {**t["defaults"], **t["tiers"][tier], **entry}
