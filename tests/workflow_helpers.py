"""Running Snakemake on a copy of the workflow, so tests never write into the repo's results/."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = str(Path(sys.executable).parent)


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
