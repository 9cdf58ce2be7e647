"""Run a command on a GPU of its own: `python workflow/scripts/gpu_slot.py CMD ...`.

Snakemake counts GPUs (`--resources gpu=N`) but assigns no device ids, so on a workstation two
jobs could land on one GPU. Each job here takes the first free slot (an flock that the OS
releases when the job ends, however it ends) and sees only that slot's GPU, for CUDA and for
EGL rendering. The workflow sets DRM_GPU_SLOTS (GPUs x jobs per GPU) and DRM_JOBS_PER_GPU.
Under SLURM, or without DRM_GPU_SLOTS (CPU cells), the command runs as it is: SLURM sets
CUDA_VISIBLE_DEVICES itself.
"""
import fcntl
import os
import sys
import time
from pathlib import Path

LOCK_DIR = Path(os.environ.get("DRM_GPU_LOCK_DIR", "results/.gpu_slots"))


def take_slot(slots: int, wait_s: float = 5.0) -> tuple[int, int]:
    """Block until a slot is free; returns (slot, fd holding its lock)."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    while True:
        for slot in range(slots):
            fd = os.open(LOCK_DIR / f"slot{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return slot, fd
        print(f"gpu_slot: all {slots} GPU slots busy; waiting", file=sys.stderr, flush=True)
        time.sleep(wait_s)


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: gpu_slot.py CMD [ARGS...]")
    slots = int(os.environ.get("DRM_GPU_SLOTS", "0"))
    if slots > 0 and "SLURM_JOB_ID" not in os.environ:
        slot, fd = take_slot(slots)
        os.set_inheritable(fd, True)  # the lock lives as long as the command does
        gpu = str(slot // int(os.environ.get("DRM_JOBS_PER_GPU", "1")))
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        os.environ["MUJOCO_EGL_DEVICE_ID"] = gpu
        print(f"gpu_slot: slot {slot} -> GPU {gpu}", file=sys.stderr, flush=True)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
