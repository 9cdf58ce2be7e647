"""Running Snakemake on a copy of the workflow, so tests never write into the repo's results/."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = str(Path(sys.executable).parent)
TINY_GRID_FILE = "tiny.yaml"  # the tiny grid's config, under config/


def workflow_copy(dest: Path) -> Path:
    for name in ("Snakefile", "workflow", "config", "environment.yml"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    shutil.copytree(REPO / "results" / "published", dest / "results" / "published")
    return dest


def write_config(dest: Path, name: str, text: str) -> str:
    path = dest / "config" / name
    path.write_text(text)
    return f"config/{name}"


def snakemake(workdir: Path, *args, timeout=600, env=None):
    """`snakemake ARGS` in workdir with this interpreter's environment first on PATH."""
    full_env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ["PATH"], **(env or {})}
    return subprocess.run(["timeout", "-k", "10", str(timeout), f"{VENV_BIN}/snakemake", *args],
                          cwd=workdir, capture_output=True, text=True, env=full_env)


def planned_jobs(done) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> count."""
    counts, in_table = {}, False
    for line in done.stdout.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if not parts or parts[0] == "total":
                break
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
    return counts


def tiny_grid_config() -> str:
    """The tiny grid: each agent's tiny cell (tests/helpers.py) on cartpole_balance, seed 1, so
    its cells are also the reference runs the training-cell tests compare with."""
    from helpers import TINY, TINY_DRM

    return yaml.safe_dump({
        "agents": ["drm", "drqv2", "alix"], "tasks": ["cartpole_balance"], "seeds": [1],
        "train": {"device": "cpu", "threads": 1, "overrides": dict(TINY),
                  "agent_overrides": {"drm": dict(TINY_DRM)}},
        "resources": {"mem_margin_mb": 1000, "frames_per_hour": 20000},
        "aggregate": {"reps": 200, "profile_reps": 100},
    }, sort_keys=False)


def build_tiny_grid(dest: Path) -> Path:
    """A workflow copy at dest whose tiny grid is trained, aggregated, drawn and reported."""
    dest.mkdir(parents=True)
    wf = workflow_copy(dest)
    cfg = write_config(wf, TINY_GRID_FILE, tiny_grid_config())
    done = snakemake(wf, "--cores", "2", "all", "--configfile", cfg, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    made = snakemake(wf, "--report", "results/report.html", "--configfile", cfg, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    return wf


def grid_cell(grid: Path, agent: str) -> Path:
    """The tiny grid's cell of one agent (cartpole_balance, seed 1)."""
    from drm.layout import RUNS, run_dir

    return grid / RUNS / run_dir(agent, "cartpole_balance", 1)
