"""The one-node SLURM test cluster really schedules jobs: GPUs, rejections, cancellation.

Needs root and Debian's slurm packages (scripts/setup.sh --slurm); see the `slurm_cluster`
fixture in conftest.py. Every command runs under a timeout.
"""

from __future__ import annotations

import subprocess
import time

import pytest

pytestmark = pytest.mark.slurm


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def _sbatch(*args: str) -> str:
    """Submits a job and returns its id."""
    r = _run("sbatch", "--parsable", *args)
    assert r.returncode == 0, f"sbatch failed: {r.stderr}"
    return r.stdout.strip().split(";")[0]


def _state(job_id: str) -> str:
    """The job's state; finished jobs stay visible to squeue for MinJobAge (300 s)."""
    r = _run("squeue", "-h", "--states=all", "-j", job_id, "-o", "%T")
    return r.stdout.strip()


def _wait_state(job_id: str, wanted: set[str], timeout: float = 60) -> str:
    end = time.monotonic() + timeout
    state = ""
    while time.monotonic() < end:
        state = _state(job_id)
        if state in wanted:
            return state
        time.sleep(0.5)
    pytest.fail(f"job {job_id} is {state!r}, not one of {sorted(wanted)} after {timeout} s")


def test_node_has_one_fake_gpu(slurm_cluster):
    r = _run("sinfo", "-h", "-N", "-o", "%N %G %T %P")
    assert r.returncode == 0, r.stderr
    node, gres, state, partition = r.stdout.split()
    assert node == slurm_cluster.node
    assert gres == "gpu:fake:1"
    assert state in {"idle", "mixed", "allocated"}
    assert partition == f"{slurm_cluster.partition}*"  # the default partition


def test_gpu_job_sees_its_gpu(slurm_cluster, tmp_path):
    out = tmp_path / "job.out"
    job = _sbatch(
        "-p", slurm_cluster.partition, "--gpus=1", "-D", str(tmp_path), "-o", str(out),
        "--wrap", "echo $CUDA_VISIBLE_DEVICES",
    )
    assert _wait_state(job, {"COMPLETED", "FAILED", "CANCELLED"}) == "COMPLETED"
    assert out.read_text().strip() == "0"


def test_more_gpus_than_exist_is_rejected_at_submit(slurm_cluster):
    r = _run("sbatch", "-p", slurm_cluster.partition, "--gpus=2", "--wrap", "true")
    assert r.returncode != 0
    assert "Requested node configuration is not available" in r.stderr


def test_scancel_stops_a_running_job(slurm_cluster, tmp_path):
    job = _sbatch("-p", slurm_cluster.partition, "-o", str(tmp_path / "sleep.out"),
                  "--wrap", "sleep 300")
    try:
        _wait_state(job, {"RUNNING"})
        r = _run("scancel", job)
        assert r.returncode == 0, r.stderr
        _wait_state(job, {"CANCELLED"}, timeout=30)
        running = _run("squeue", "-h", "-t", "RUNNING", "-j", job, "-o", "%i")
        assert running.stdout.strip() == ""
    finally:
        _run("scancel", job)
