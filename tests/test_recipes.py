"""The recipes of docs/architecture.md, followed literally in a copy of the tree: a throwaway
agent and a throwaway claim rule, each refused until its last listed file is in place, then
planned by a tiny grid's dry run that imports the copy's code (PYTHONPATH), not the installed."""
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workflow_helpers import REPO, planned_jobs, snakemake, write_config

# What a dry run of the workflow reads: the code, the configs and the published curves.
TREES = ("drm", "baselines", "workflow", "config", "Snakefile", "environment.yml", "results/published")
DRY_RUN_SECONDS = 120


@pytest.fixture
def tree_copy(tmp_path) -> Path:
    """The tree, copied; its code comes before the installed package on PYTHONPATH."""
    for name in TREES:
        src, dest = REPO / name, tmp_path / name
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
    return tmp_path


def dry_run(tree_copy: Path, config: str):
    """`snakemake -n all` on the tree_copy; Snakemake prints a refusal on stdout."""
    return snakemake(tree_copy, "-n", "all", "--configfile", config, timeout=DRY_RUN_SECONDS,
                     env={"PYTHONPATH": str(tree_copy)})


def tiny_grid(tree_copy: Path, agents: list[str], claims: str | None) -> str:
    """Two cells per agent of 400 frames on one easy task, on the CPU."""
    return write_config(tree_copy, "tiny.yaml", textwrap.dedent(f"""\
        agents: [{', '.join(agents)}]
        tasks: [cartpole_balance]
        seeds: [1, 2]
        claims: {claims or 'null'}
        train:
          device: cpu
          threads: 1
          overrides: {{num_train_frames: 400, num_seed_frames: 200, eval_every_frames: 200,
                      episode_frames: 100, batch_size: 16, replay_buffer_size: 10000}}
        """))


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not written exactly once in {path}"
    path.write_text(text.replace(old, new))


def test_an_agent_added_as_the_recipe_says_is_planned_by_the_dry_run(tree_copy):
    # 1. its class
    (tree_copy / "baselines" / "throwaway.py").write_text(textwrap.dedent('''\
        """A throwaway agent of tests/test_recipes.py: DrQ-v2 under another name."""
        from baselines.drqv2 import DrQV2Agent


        class ThrowawayAgent(DrQV2Agent):
            """Follows the recipe: a subclass of the reference agent."""
        '''))
    # 2. its config
    drqv2 = (tree_copy / "drm" / "cfg" / "agent" / "drqv2.yaml").read_text()
    (tree_copy / "drm" / "cfg" / "agent" / "throwaway.yaml").write_text(
        drqv2.replace("name: drqv2", "name: throwaway")
             .replace("_target_: baselines.drqv2.DrQV2Agent", "_target_: baselines.throwaway.ThrowawayAgent"))
    config = tiny_grid(tree_copy, ["throwaway", "drqv2"], None)

    refused = dry_run(tree_copy, config)
    assert refused.returncode != 0
    assert "agents: unknown ['throwaway']" in refused.stdout, refused.stdout[-3000:]

    # 3. its line in the registry
    registry = tree_copy / "drm" / "cell" / "config.py"
    replace_once(registry, '\nAGENTS = {', '\nAGENTS = {"throwaway": Networks(), ')
    planned = dry_run(tree_copy, config)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert planned_jobs(planned)["train"] == 4
    for seed in (1, 2):
        assert f"results/runs/throwaway/cartpole_balance/seed{seed}/eval.csv" in planned.stdout

    # The registry's, the YAML's and the class's agreement, as tests/test_layout.py checks it.
    checked = subprocess.run(
        [sys.executable, "-c", textwrap.dedent("""\
            import hydra.utils, yaml
            from baselines.utils import Agent
            from drm.cell.config import AGENTS, CFG_DIR, compose
            cfg = yaml.safe_load((CFG_DIR / "agent" / "throwaway.yaml").read_text())
            cls = hydra.utils.get_class(cfg["_target_"])
            assert issubclass(cls, Agent) and "throwaway" in AGENTS
            print(cls.__module__, compose("throwaway", "cartpole_balance", {}).agent.name)
            """)],
        cwd=tree_copy, env={**os.environ, "PYTHONPATH": str(tree_copy)}, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert checked.stdout.split() == ["baselines.throwaway", "throwaway"]


# The recipe's evaluator: one agent's mean score against a threshold, with a bootstrap CI.
EVALUATOR = '''
def _mean_score_above(p, stats, settings, tidy):
    """A throwaway rule of tests/test_recipes.py: the mean score exceeds `score`."""
    per_task = [v[:, None] for v in _score_arrays(p, stats, settings["last_k"]).values()]
    point, low, high = stats.interval_estimate(
        per_task, lambda *x: np.array([np.concatenate(x).mean()]), settings["reps"],
        settings["seed"], ("claim", p.claim["id"]))
    threshold = p.claim["score"]
    return _result(f"mean score above {threshold:g}", point[0], low[0], high[0], threshold,
                   _verdict(point[0], low[0], high[0], threshold, True, False),
                   min(len(x) for x in per_task))


RULES = {
    "mean_score_above": Rule("1", {"score": (0.5, _unit())}, _mean_score_above),
'''

CLAIMS = textwrap.dedent("""\
    claims:
      - id: drqv2_scores_above_half
        harness_rule: a throwaway claim of tests/test_recipes.py
        rule: mean_score_above
        agents: [drqv2]
        tasks: [cartpole_balance]
        frames: 400
    """)

# The claim of CLAIMS on synthetic runs with a known answer (every final score near 0.9).
EVALUATE = textwrap.dedent("""\
    import sys
    import numpy as np
    from pathlib import Path
    from drm.analysis import claims, results
    from drm.analysis.synthetic import write_run
    runs, rng = Path(sys.argv[1]), np.random.default_rng(0)
    for seed in range(1, 7):
        write_run(runs / "drqv2" / "cartpole_balance" / f"seed{seed}", rng, 20, 0.9, speed=0.3)
    tidy = results.load(runs, ["drqv2"], ["cartpole_balance"], list(range(1, 7)), [], False).tidy
    claim = dict(claims.load(sys.argv[2])[0], frames=190_000)
    table = claims.evaluate(claims.prepare([claim], tidy, range(1, 7)), tidy,
                            dict(reps=1000, seed=0, last_k=1))
    print(claims.line(table.iloc[0]))
    """)


def test_a_claim_rule_added_as_the_recipe_says_is_accepted_by_the_dry_run(tree_copy):
    claims_file = write_config(tree_copy, "claims_throwaway.yaml", CLAIMS)
    config = tiny_grid(tree_copy, ["drqv2"], claims_file)

    refused = dry_run(tree_copy, config)
    assert refused.returncode != 0
    assert "unknown rule 'mean_score_above'" in refused.stdout, refused.stdout[-3000:]

    # Its evaluator and its record in RULES.
    replace_once(tree_copy / "drm" / "analysis" / "claims.py", "\nRULES = {\n", EVALUATOR)
    planned = dry_run(tree_copy, config)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert planned_jobs(planned)["aggregate"] == 1
    assert "evaluates 1 claim(s): drqv2_scores_above_half (mean_score_above: drqv2" in planned.stdout

    evaluated = subprocess.run(
        [sys.executable, "-c", EVALUATE, str(tree_copy / "runs"), str(tree_copy / claims_file)],
        cwd=tree_copy, env={**os.environ, "PYTHONPATH": str(tree_copy)}, capture_output=True, text=True, timeout=120)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert re.match(r"claim drqv2_scores_above_half: supported - mean score above 0.5 = 0\.[89]\d\d ",
                    evaluated.stdout), evaluated.stdout
