"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Choose the headless rendering backend before any test imports dm_control: the backend is
    fixed at import, and in-process tests build rendering environments."""
    from drm.cell import rendering

    rendering.choose_backend()


# ---------------------------------------------------------------------------------------------
# SLURM test cluster (tests marked `slurm`)
#
# `slurm_cluster` starts a real one-node SLURM cluster with one fake GPU through
# scripts/slurm_cluster.sh (Debian's munge/slurmctld/slurmd, no systemd), once per session,
# and stops it at the end if this session started it. It skips when not root, when the Debian
# packages are missing, or when the daemons do not start.
# ---------------------------------------------------------------------------------------------

SLURM_SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch")
_slurm_skip: list[str] = []  # a failed start is not retried for every test


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


def _skip(reason: str):
    _slurm_skip.append(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster():
    if _slurm_skip:
        pytest.skip(_slurm_skip[0])
    if os.geteuid() != 0:
        _skip("slurm: needs root (writes /etc/slurm and starts slurmctld/slurmd)")
    missing = [b for b in SLURM_BINARIES if _which(b) is None]
    if missing:
        _skip(
            f"slurm: missing {', '.join(missing)}; run `scripts/setup.sh --slurm` "
            "(apt-get install munge slurm-client slurmctld slurmd)"
        )
    was_running = _slurm_script("status", 30).returncode == 0
    start = _slurm_script("start", 120)
    if start.returncode != 0:
        if not was_running:
            _slurm_script("stop", 90)  # whatever daemons did start
        errors = [ln for ln in start.stderr.splitlines() if "ERROR" in ln]
        _skip(
            f"slurm: the test cluster did not start (exit {start.returncode}): "
            + ("; ".join(errors) or start.stderr[-1000:])
            + " (run `scripts/slurm_cluster.sh start` to see the daemons' logs)"
        )
    # The script's last stdout line: node=vm cpus=2 memory_mb=22899 gres=gpu:fake:1 partition=debug* ...
    last = start.stdout.strip().splitlines()[-1]
    info = dict(kv.split("=", 1) for kv in last.split() if "=" in kv)
    cluster = SlurmCluster(
        node=info["node"],
        partition=info["partition"].rstrip("*"),  # sinfo marks the default partition with *
        cpus=int(info["cpus"]),
        memory_mb=int(info["memory_mb"]),
        gres=info["gres"],
    )
    try:
        yield cluster
    finally:
        if not was_running:  # leave a cluster that a developer started alone
            _slurm_script("stop", 90)


# ---------------------------------------------------------------------------------------------
