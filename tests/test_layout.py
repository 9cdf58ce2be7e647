"""The tree's layout (issue #25): the grid's loader in the package, the on-disk contract written
once, one agent registry and one task list that agree with what reads them."""
import ast
import re
from pathlib import Path

import yaml

from baselines.utils import Agent
from drm import layout
from drm.analysis.results import DMC_TASKS
from drm.cell import presets
from drm.cell.config import AGENTS, CFG_DIR

REPO = Path(__file__).resolve().parents[1]
CODE = [p for root in ("drm", "workflow", "baselines") for p in (REPO / root).rglob("*")
        if p.suffix in (".py", ".smk")] + [REPO / "Snakefile"]


def test_no_code_and_no_test_configuration_edits_sys_path():
    edits = [str(p.relative_to(REPO)) for p in CODE
             if re.search(r"sys\.path\.(insert|append)", p.read_text())]
    assert edits == []
    assert "pythonpath" not in (REPO / "pyproject.toml").read_text()


def test_the_on_disk_contract_is_import_free_and_written_once():
    tree = ast.parse((REPO / "drm" / "layout.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    for fact in (layout.RUNS, layout.TRAIN_LOG, layout.AGGREGATE_DIR, layout.FIGURES_DIR,
                 layout.VALIDATE_DIR, layout.EXPORT_DIR, layout.RECORDED_DIR, layout.RUN_DIR):
        quoted = re.compile(r"""["']""" + re.escape(fact) + r"""["'/]""")
        places = [str(p.relative_to(REPO)) for p in CODE if quoted.search(p.read_text())]
        assert places == ["drm/layout.py"], f"{fact!r} is written in {places}"


def test_a_series_name_round_trips():
    assert layout.parse_series("drm") == (layout.HARNESS, "drm")
    assert layout.parse_series("drqv2_published:drqv2") == ("drqv2_published", "drqv2")
    for series in ((layout.HARNESS, "alix"), ("drm_published", "drm")):
        assert layout.parse_series(layout.series_name(series)) == series


def test_every_registered_agent_has_its_config_and_a_class_that_keeps_the_contract():
    import hydra.utils

    files = sorted(p.stem for p in (CFG_DIR / "agent").glob("*.yaml"))
    assert files == sorted(AGENTS), "each agent: one line in AGENTS and one drm/cfg/agent/<name>.yaml"
    for agent in AGENTS:
        cfg = yaml.safe_load((CFG_DIR / "agent" / f"{agent}.yaml").read_text())
        assert cfg["name"] == agent
        cls = hydra.utils.get_class(cfg["_target_"])
        assert issubclass(cls, Agent), f"{cfg['_target_']} is not a baselines.utils.Agent"
        for method in ("act", "update", "log_columns", "log_state"):
            assert getattr(cls, method) is not getattr(Agent, method), f"{agent} lacks {method}"


def test_tasks_yaml_names_agents_and_tables_that_exist():
    tables = presets.tables()
    for name, line in tables["agents"].items():
        assert name == "baselines" or name in AGENTS, f"tasks.yaml configures unknown agent {name!r}"
        assert line["tables"] and all(t in tables for t in line["tables"])


def test_every_configured_task_is_a_suite_task_the_importer_accepts():
    from drm.grid import task_names

    configured = presets.configured_tasks()
    assert configured <= set(task_names()), sorted(configured - set(task_names()))
    assert configured <= DMC_TASKS, f"not in results.DMC_TASKS: {sorted(configured - DMC_TASKS)}"
