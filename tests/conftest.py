"""The suite's hooks (order, completeness) and shared fixtures (the tiny grid, the SLURM cluster)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Choose the headless rendering backend before any test imports dm_control: the backend is
    fixed at import, and in-process tests build rendering environments. The cells the tests start
    use one thread each, so that two pytest-xdist workers share the two cores without spinning."""
    from drm.cell import rendering

    rendering.choose_backend()
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# ---------------------------------------------------------------------------------------------
# Order and completeness
#
# The SLURM tests run together on one xdist worker (one cluster), and the long tests are handed
# out first, so that the two workers end together. With --require-all (CI), a test marked slow
# or slurm that skipped fails the run: a missing package or cluster is not a pass.
# ---------------------------------------------------------------------------------------------

LONG_FIRST = ("slurm", "slow")


def pytest_addoption(parser):
    parser.addoption("--require-all", action="store_true",
                     help="fail the run when a test marked slow or slurm is skipped (CI)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.xdist_group("slurm"))

    def rank(item):
        return next((i for i, m in enumerate(LONG_FIRST) if item.get_closest_marker(m)), len(LONG_FIRST))

    items.sort(key=rank)  # stable: within a rank, the files' order


_skipped_long: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and any(m in report.keywords for m in LONG_FIRST):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped_long.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if _cluster.get("started"):
        _slurm_script("stop", 90)
    if session.config.getoption("require_all") and _skipped_long and not hasattr(session.config, "workerinput"):
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"--require-all: {len(_skipped_long)} slow or slurm test(s) skipped:\n  "
            + "\n  ".join(_skipped_long), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ---------------------------------------------------------------------------------------------
# Built once per test run
# ---------------------------------------------------------------------------------------------

def shared_once(tmp_path_factory, name: str, build) -> Path:
    """`build(folder)` once per test run, across pytest-xdist's workers too: the first worker
    that asks builds it under a lock, the others wait for it and read it; a failed build fails
    each test that asks, with the first failure's message."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, shared by the workers
    folder, failed = root / name, root / f"{name}.failed"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(f"{name} could not be built: {failed.read_text()}")
        if not (root / f"{name}.built").exists():
            try:
                build(folder)
            except BaseException as error:
                failed.write_text(str(error)[-5000:])
                raise
            (root / f"{name}.built").touch()
    return folder


@pytest.fixture(scope="session")
def tiny_grid(tmp_path_factory) -> Path:
    """The tiny grid (tests/workflow_helpers.py) trained, aggregated, drawn and reported once;
    its cells are the training-cell tests' reference runs. Tests read it and change only copies."""
    from workflow_helpers import build_tiny_grid

    return shared_once(tmp_path_factory, "tiny_grid", build_tiny_grid)


# ---------------------------------------------------------------------------------------------
# SLURM test cluster (tests marked `slurm`)
#
# A real one-node SLURM cluster with one fake GPU, through scripts/slurm_cluster.sh (Debian's
# munge/slurmctld/slurmd, no systemd). Where its packages are installed and we are root, it is
# started before the first test and stopped after the last (if this run started it): Snakemake's
# SLURM plugin runs `scontrol show config` at every start, which waits 9 s for a controller that
# is down; with it up, every Snakemake call of the suite is that much faster. `slurm_cluster`
# skips when not root, when the packages are missing, or when the daemons did not start.
# ---------------------------------------------------------------------------------------------

SLURM_SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch")
_cluster: dict = {}  # "info" (a SlurmCluster) or "skip" (why not); "started": by this process


@dataclass(frozen=True)
class SlurmCluster:
    node: str  # the one node's name (hostname -s)
    partition: str  # the default partition
    cpus: int
    memory_mb: int
    gres: str  # e.g. "gpu:fake:1"


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _slurm_script(command: str, timeout: int) -> subprocess.CompletedProcess:
    """Runs scripts/slurm_cluster.sh under `timeout` (the script bounds its own waits too)."""
    return subprocess.run(
        ["timeout", "-k", "10", str(timeout), "bash", str(SLURM_SCRIPT), command],
        capture_output=True,
        text=True,
        timeout=timeout + 30,
    )


def _cluster_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "slurm: needs root (writes /etc/slurm and starts slurmctld/slurmd)"
    missing = [b for b in SLURM_BINARIES if _which(b) is None]
    if missing:
        return (f"slurm: missing {', '.join(missing)}; run `scripts/setup.sh --slurm` "
                "(apt-get install munge slurm-client slurmctld slurmd)")
    return None


def _bring_up_cluster() -> None:
    """Starts the test cluster unless it runs; once per process (a failed start is not retried)."""
    if _cluster:
        return
    reason = _cluster_unavailable()
    if reason:
        _cluster["skip"] = reason
        return
    was_running = _slurm_script("status", 30).returncode == 0
    start = _slurm_script("start", 120)
    if start.returncode != 0:
        if not was_running:
            _slurm_script("stop", 90)  # whatever daemons did start
        errors = [ln for ln in start.stderr.splitlines() if "ERROR" in ln]
        _cluster["skip"] = (
            f"slurm: the test cluster did not start (exit {start.returncode}): "
            + ("; ".join(errors) or start.stderr[-1000:])
            + " (run `scripts/slurm_cluster.sh start` to see the daemons' logs)"
        )
        return
    # The script's last stdout line: node=vm cpus=2 memory_mb=22899 gres=gpu:fake:1 partition=debug* ...
    last = start.stdout.strip().splitlines()[-1]
    info = dict(kv.split("=", 1) for kv in last.split() if "=" in kv)
    _cluster["info"] = SlurmCluster(
        node=info["node"],
        partition=info["partition"].rstrip("*"),  # sinfo marks the default partition with *
        cpus=int(info["cpus"]),
        memory_mb=int(info["memory_mb"]),
        gres=info["gres"],
    )
    _cluster["started"] = not was_running  # leave a cluster that a developer started alone


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput") and _cluster_unavailable() is None:
        _bring_up_cluster()  # in the controller, before any worker starts a test


@pytest.fixture(scope="session")
def slurm_cluster():
    _bring_up_cluster()
    if "skip" in _cluster:
        pytest.skip(_cluster["skip"])
    return _cluster["info"]
