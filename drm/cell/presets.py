"""Per-task settings from the official repos (drm/cfg/tasks.yaml says which and why), filled
into the keys a cell leaves at null."""
from functools import lru_cache
from pathlib import Path

import yaml

TASKS_FILE = Path(__file__).resolve().parents[1] / "cfg" / "tasks.yaml"


@lru_cache(maxsize=None)
def tables() -> dict:
    return yaml.safe_load(TASKS_FILE.read_text())


def _agent_tables(agent: str) -> dict:
    """An agent's line of the file's `agents:` (its tables, first its own; its defaults), else
    the baselines' line."""
    agents = tables()["agents"]
    return agents.get(agent, agents["baselines"])


def configured_tasks() -> frozenset[str]:
    """The Control Suite tasks this file configures (tests/test_grid.py checks them against
    dm_control), so that checking one needs no import of dm_control."""
    t = tables()
    names = {name for line in t["agents"].values() for name in line["tables"]}
    return frozenset(task for name in names for task in t[name]) - frozenset(t["outside_suite"])


def task_settings(agent: str, task: str) -> dict:
    """The dotted-key settings of one (agent, task) cell, before any user override: the first of
    the agent's tables that configures the task, agent keys only from its own (the first)."""
    t, line = tables(), _agent_tables(agent)
    entry = dict(line.get("defaults") or {})
    for rank, name in enumerate(line["tables"]):
        if t[name].get(task):
            entry.update({k: v for k, v in t[name][task].items() if rank == 0 or not k.startswith("agent.")})
            break
    tier = entry.pop("tier", "medium")
    return {**t["defaults"], **t["tiers"][tier], **entry}
