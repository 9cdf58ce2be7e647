"""Which GPU each local training job gets (workflow/scripts/gpu_slot.py, grid.claim_local_gpus);
no GPU needed: the jobs print the CUDA_VISIBLE_DEVICES they were given."""
import os
import subprocess
import sys
import time

import pytest

from drm import gpu_slot
from drm import grid
from helpers import REPO

LAUNCHER = REPO / "workflow" / "scripts" / "gpu_slot.py"
# A job: writes the GPU it sees (and whether MUJOCO_EGL_DEVICE_ID was set) to argv[1], then waits
# for the file argv[2], so that every job of a test holds its slot at the same time.
JOB = ("import os, pathlib, sys, time\n"
       "pathlib.Path(sys.argv[1]).write_text(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset') + ' '"
       " + os.environ.get('MUJOCO_EGL_DEVICE_ID', 'unset'))\n"
       "deadline = time.time() + 60\n"
       "while not pathlib.Path(sys.argv[2]).exists() and time.time() < deadline:\n"
       "    time.sleep(0.05)\n")
SALLOC = {"SLURM_JOB_ID": "4242", "SLURM_JOBID": "4242", "SLURM_JOB_GPUS": "4,5", "SLURM_GPUS": "2"}

# (GPUs that nvidia-smi lists, jobs per GPU, running jobs, the user's CUDA_VISIBLE_DEVICES (None:
# unset), inside an salloc allocation) -> the GPU of each running job, in the order they started.
TABLE = [
    pytest.param(2, 1, 2, None, False, ["0", "1"], id="2 GPUs x 1"),
    pytest.param(2, 2, 2, None, False, ["0", "1"], id="2 GPUs x 2, 2 running: one each"),
    pytest.param(2, 2, 3, None, False, ["0", "1", "0"], id="2 GPUs x 2, 3 running"),
    pytest.param(2, 2, 4, None, False, ["0", "1", "0", "1"], id="2 GPUs x 2, all running"),
    pytest.param(3, 2, 4, None, False, ["0", "1", "2", "0"], id="3 GPUs x 2, 4 running"),
    pytest.param(4, 2, 2, "2,3", False, ["2", "3"], id="the user's GPUs 2,3"),
    pytest.param(4, 2, 4, " 3 ,1", False, ["3", "1", "3", "1"], id="the user's GPUs 3,1, all running"),
    pytest.param(8, 1, 2, "GPU-5e1a,GPU-77b0", False, ["GPU-5e1a", "GPU-77b0"], id="UUIDs"),
    pytest.param(4, 1, 1, "1,-1,2", False, ["1"], id="CUDA stops at -1"),
    pytest.param(2, 2, 2, "0,1", True, ["0", "1"], id="salloc, 2 GPUs x 2"),
    pytest.param(8, 1, 2, "4,5", True, ["4", "5"], id="salloc, unconstrained devices 4,5"),
]


def plan(smi_gpus, per_gpu, cuda_visible) -> list[str]:
    """The slots' GPUs, as the workflow's main process lays them out for its local jobs."""
    environ = {} if cuda_visible is None else {"CUDA_VISIBLE_DEVICES": cuda_visible}
    return gpu_slot.slot_gpus(grid.visible_gpus(environ, lambda: smi_gpus), per_gpu)


@pytest.mark.parametrize("smi_gpus, per_gpu, running, cuda_visible, salloc, expected", TABLE)
def test_running_jobs_spread_over_the_users_gpus(smi_gpus, per_gpu, running, cuda_visible, salloc,
                                                 expected):
    """Jobs starting one after another (salloc changes nothing here: see the real test below)."""
    slots, held = plan(smi_gpus, per_gpu, cuda_visible), set()
    for _ in range(running):
        held.add(gpu_slot.choose_slot(slots, held))
    assert [slots[s] for s in sorted(held)] == expected
    if running == len(slots):
        assert gpu_slot.choose_slot(slots, held) is None, "all slots held: the next job waits"


@pytest.mark.parametrize("layout, held, expected", [
    (["0", "1", "0", "1", "0", "1"], {1, 2, 4}, 3),  # GPU 0 runs 2 jobs, GPU 1 one: not slot 0
    (["a", "b", "c", "a", "b", "c"], {2, 3, 5}, 1),  # c runs 2, a 1, b none
    (["a", "b", "c"], {0, 2}, 1),
    (["a", "b"], {0, 1}, None),
])
def test_a_new_job_goes_to_the_least_busy_gpu(layout, held, expected):
    assert gpu_slot.choose_slot(layout, held) == expected


def launch(tmp_path, index, env):
    """gpu_slot.py running one JOB, as the train rule's shell runs it."""
    out = tmp_path / f"job{index}.txt"
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), sys.executable, "-c", JOB, str(out),
                             str(tmp_path / "go")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, out


def job_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLURM_") and k not in ("CUDA_VISIBLE_DEVICES", "MUJOCO_EGL_DEVICE_ID",
                                                         gpu_slot.SLOTS_ENV)}
    return {**env, "DRM_GPU_LOCK_DIR": str(tmp_path / "locks"), **extra}


def seen(outs, deadline_s=60) -> list[str]:
    deadline = time.time() + deadline_s
    while not all(o.exists() and o.read_text() for o in outs):
        assert time.time() < deadline, "a job never started"
        time.sleep(0.05)
    return [o.read_text() for o in outs]


def gpu_grid(per_gpu):
    return {"agents": ["drm"], "tasks": ["cheetah_run"], "seeds": [1], "train": {"device": "cuda"},
            "resources": {"jobs_per_gpu": per_gpu}}


@pytest.mark.parametrize("smi_gpus, per_gpu, running, cuda_visible, salloc, expected", TABLE)
def test_real_jobs_get_those_gpus_and_no_egl_device(tmp_path, monkeypatch, smi_gpus, per_gpu, running,
                                                    cuda_visible, salloc, expected):
    """The same table through the real path: grid.claim_local_gpus in the main process, then
    concurrent gpu_slot.py processes, inside an salloc allocation's environment where it says so."""
    monkeypatch.delenv(gpu_slot.SLOTS_ENV, raising=False)
    environ = {} if cuda_visible is None else {"CUDA_VISIBLE_DEVICES": cuda_visible}
    grid.claim_local_gpus(gpu_grid(per_gpu), None, grid.visible_gpus(environ, lambda: smi_gpus))
    env = job_env(tmp_path, **environ, **(SALLOC if salloc else {}),
                  **{gpu_slot.SLOTS_ENV: os.environ[gpu_slot.SLOTS_ENV]})
    jobs = [launch(tmp_path, i, env) for i in range(running)]
    try:
        outs = seen([out for _, out in jobs])
    finally:
        (tmp_path / "go").touch()
        for proc, _ in jobs:
            proc.communicate(timeout=60)
    assert sorted(o.split()[0] for o in outs) == sorted(expected)
    assert all(o.split()[1] == "unset" for o in outs), "EGL is the cell's choice, not gpu_slot's"


def test_a_job_waits_for_a_free_slot(tmp_path):
    env = job_env(tmp_path, **{gpu_slot.SLOTS_ENV: "0,1"})
    first, second = launch(tmp_path, 0, env), launch(tmp_path, 1, env)
    try:
        assert sorted(o.split()[0] for o in seen([first[1], second[1]])) == ["0", "1"]
        third = launch(tmp_path, 2, env)
        time.sleep(1.5)
        assert not third[1].exists(), "all slots held: the third job waits"
    finally:
        (tmp_path / "go").touch()
    for proc, _ in (first, second):
        proc.communicate(timeout=60)
    err = third[0].communicate(timeout=60)[1]
    assert "all 2 GPU slots busy; waiting" in err
    assert third[1].read_text().split()[0] in {"0", "1"}


@pytest.mark.parametrize("env", [
    {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "3"},  # submitted by the SLURM executor
    {"CUDA_VISIBLE_DEVICES": "7", gpu_slot.SLOTS_ENV: ""},  # CPU cells
    {"MUJOCO_EGL_DEVICE_ID": "1"},
], ids=["SLURM executor job", "no slots", "no GPU variables"])
def test_without_slots_the_command_runs_as_it_is(tmp_path, env):
    proc, out = launch(tmp_path, 0, job_env(tmp_path, **env))
    (tmp_path / "go").touch()
    assert proc.communicate(timeout=60)[1] == ""
    assert out.read_text().split() == [env.get("CUDA_VISIBLE_DEVICES", "unset"),
                                       env.get("MUJOCO_EGL_DEVICE_ID", "unset")]
