"""workflow/scripts/gpu_slot.py: each local job gets a GPU id of its own (no GPU needed to test)."""
import os
import subprocess
import sys
import time

from helpers import REPO

LAUNCHER = REPO / "workflow" / "scripts" / "gpu_slot.py"
SHOW = "import os, time; print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['MUJOCO_EGL_DEVICE_ID']); time.sleep({})"


def launch(tmp_path, slots, per_gpu=1, sleep=0.0, **env):
    full = {**os.environ, "DRM_GPU_SLOTS": str(slots), "DRM_JOBS_PER_GPU": str(per_gpu),
            "DRM_GPU_LOCK_DIR": str(tmp_path / "locks"), **env}
    if "SLURM_JOB_ID" not in env:
        full.pop("SLURM_JOB_ID", None)  # the tests themselves may run inside a SLURM job
    return subprocess.Popen([sys.executable, str(LAUNCHER), sys.executable, "-c", SHOW.format(sleep)],
                            env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_running_jobs_never_share_a_gpu_and_a_third_waits(tmp_path):
    first, second = launch(tmp_path, 2, sleep=3), launch(tmp_path, 2, sleep=3)
    time.sleep(1)
    third = launch(tmp_path, 2)
    outs = [p.communicate(timeout=60)[0].split() for p in (first, second)]
    assert sorted(o[0] for o in outs) == ["0", "1"], "two jobs, two GPUs"
    assert all(o[0] == o[1] for o in outs), "EGL renders on the job's own GPU"
    out, err = third.communicate(timeout=60)
    assert out.split()[0] in {"0", "1"} and "all 2 GPU slots busy; waiting" in err


def test_jobs_per_gpu_maps_slots_onto_gpus(tmp_path):
    procs = [launch(tmp_path, 4, per_gpu=2, sleep=2) for _ in range(4)]
    gpus = sorted(p.communicate(timeout=60)[0].split()[0] for p in procs)
    assert gpus == ["0", "0", "1", "1"]


def test_under_slurm_or_on_the_cpu_the_command_runs_as_it_is(tmp_path):
    for env in ({"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "3", "MUJOCO_EGL_DEVICE_ID": "3"},
                {"CUDA_VISIBLE_DEVICES": "7", "MUJOCO_EGL_DEVICE_ID": "7", "DRM_GPU_SLOTS": "0"}):
        slots = env.pop("DRM_GPU_SLOTS", "2")
        proc = launch(tmp_path, slots, **env)
        assert proc.communicate(timeout=60)[0].split() == [env["CUDA_VISIBLE_DEVICES"]] * 2
