"""The grid through a real SLURM cluster: one GPU per training job, and a cancelled job resumes."""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from workflow_helpers import VENV_BIN, snakemake, workflow_copy, write_config

pytestmark = pytest.mark.slurm

# The cells ask SLURM for a GPU (train.device: cuda) but train on the CPU (device=cpu): the test
# cluster's GPU is a fake one that only sets CUDA_VISIBLE_DEVICES.
GRID = """
agents: [drqv2]
tasks: [cartpole_balance]
seeds: [1, 2]
train:
  device: cuda
  threads: 1
  overrides: {device: cpu, num_train_frames: 1000, num_seed_frames: 500, eval_every_frames: 500,
              num_eval_episodes: 1, episode_frames: 250, batch_size: 16,
              replay_buffer_size: 10000, snapshot_every_frames: 250, save_video: false}
resources: {mem_margin_mb: 1000, frames_per_hour: 20000}
aggregate: {reps: 100, profile_reps: 50, published: []}
claims: null
"""
PROFILE_ARGS = ["--workflow-profile", "workflow/profiles/slurm", "--slurm-init-seconds-before-status-checks", "1",
                "--retries", "0", "--jobs", "2"]


def squeue(*fields, workdir: Path | None = None) -> list[list[str]]:
    """The queue's jobs, or only those submitted from `workdir`: a job of an earlier test on the
    shared cluster can still be listed (completing) when the next test looks."""
    out = subprocess.run(["squeue", "-h", "-o", " ".join((*fields, "%Z"))], capture_output=True,
                         text=True, timeout=30)
    rows = [line.split() for line in out.stdout.splitlines()]
    return [row[:-1] for row in rows if workdir is None or row[-1] == str(workdir)]


def job_tres(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    return out.stdout


def test_grid_on_slurm_one_gpu_each_and_a_cancelled_job_resumes(slurm_cluster, tmp_path):
    wf = workflow_copy(tmp_path)
    cfg = write_config(wf, "slurm.yaml", GRID)
    env = {"PATH": VENV_BIN + os.pathsep + os.environ["PATH"]}
    first = subprocess.Popen(["timeout", "-k", "10", "900", f"{VENV_BIN}/snakemake", "--cores", "2", "all",
                              "--configfile", cfg, *PROFILE_ARGS], cwd=wf, env={**os.environ, **env},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runs = wf / "results" / "runs" / "drqv2" / "cartpole_balance"
    snapshots = [runs / f"seed{s}" / "work" / "snapshot.pt" for s in (1, 2)]
    deadline, tres = time.time() + 600, {}
    try:
        while not any(p.exists() for p in snapshots):
            assert first.poll() is None, f"snakemake ended early:\n{first.stdout.read()[-3000:]}"
            assert time.time() < deadline, "no snapshot within 10 minutes"
            for job_id, state in squeue("%i", "%T", workdir=wf):
                if state == "RUNNING":
                    tres[job_id] = job_tres(job_id)
            time.sleep(1)
        resumable = [p.parent.parent for p in snapshots if p.exists()]
        for job_id, _ in squeue("%i", "%T", workdir=wf):
            tres.setdefault(job_id, job_tres(job_id))
        subprocess.run(["scancel", "--user", "root"], check=True, timeout=30)  # preempt every job
        log = first.communicate(timeout=300)[0]
    finally:
        first.kill()
    assert first.returncode != 0, "the cancelled jobs fail this invocation"
    assert len(tres) == 2 and all("gres/gpu=1" in t or "gres:gpu:1" in t for t in tres.values()), tres
    assert not any((runs / f"seed{s}" / "meta.json").exists() for s in (1, 2))

    second = snakemake(wf, "--cores", "2", "all", "--configfile", cfg, *PROFILE_ARGS, timeout=900, env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    for seed in (1, 2):
        meta = json.loads((runs / f"seed{seed}" / "meta.json").read_text())
        assert meta["machine"]["slurm_job_id"], "trained inside a SLURM job"
        assert meta["machine"]["cuda_visible_devices"] == "0", "SLURM gave the job its (fake) GPU"
        assert meta["frames"] == 1000
    for cell in resumable:
        assert "resumed from the snapshot at frame" in (cell / "train.log").read_text()
        assert json.loads((cell / "meta.json").read_text())["starts"] == 2
    assert (wf / "results" / "figures" / "aggregate_estimates.png").exists()
    assert log  # the first invocation's output, for the record
