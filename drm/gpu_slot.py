"""Run a command on a GPU of its own: `python workflow/scripts/gpu_slot.py CMD ...` (the launcher).

Snakemake counts GPUs (`--resources gpu=N`) but assigns no device ids, so two local jobs could
land on one GPU. The workflow's main process sets DRM_GPU_SLOTS to the GPU of each slot,
round-robin over the GPUs the user left visible (e.g. "2,3,2,3": CUDA_VISIBLE_DEVICES=2,3 and
two jobs per GPU; grid.claim_local_gpus). Each job here takes a free slot on the GPU that runs
the fewest jobs (an flock per slot, which the OS releases when the job ends, however it ends)
and sees only that slot's GPU through CUDA_VISIBLE_DEVICES; the cell picks its EGL device to
match.

DRM_GPU_SLOTS is the signal that jobs share this machine's GPUs: the workflow's onstart sets it
only when Snakemake runs jobs locally (`workflow.local_exec`), on a workstation or inside a
SLURM allocation (salloc, srun, an sbatch script) that runs the local profile, whose jobs share
the allocation's GPUs. Under the SLURM executor onstart clears it, and the Snakemake that each
submitted job runs has no onstart (`--no-hooks`): the command runs as it is, on the GPU that
SLURM gave the job in CUDA_VISIBLE_DEVICES. So do CPU cells.
"""
import fcntl
import os
import sys
import time
from pathlib import Path

LOCK_DIR = Path(os.environ.get("DRM_GPU_LOCK_DIR", "results/.gpu_slots"))
SLOTS_ENV = "DRM_GPU_SLOTS"  # the GPU of each slot, comma-separated; set only for a local run


def slot_gpus(gpus: list[str], per_gpu: int) -> list[str]:
    """The GPU of each slot, round-robin (slot s on GPU s % len(gpus)): the first len(gpus) jobs
    get distinct GPUs, and a GPU takes a second job only when every GPU has one."""
    return [gpus[slot % len(gpus)] for slot in range(len(gpus) * per_gpu)]


def choose_slot(slots: list[str], held: set[int]) -> int | None:
    """The free slot whose GPU runs the fewest jobs (the lowest such slot); None when all are
    held. `slots` is the GPU of each slot (slot_gpus)."""
    load = {gpu: 0 for gpu in slots}
    for slot in held:
        load[slots[slot]] += 1
    free = [slot for slot in range(len(slots)) if slot not in held]
    return min(free, key=lambda slot: (load[slots[slot]], slot), default=None)


def _lock(slot: int) -> int | None:
    """The slot's lock, taken without waiting; None when another job holds it."""
    fd = os.open(LOCK_DIR / f"slot{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def take_slot(slots: list[str], wait_s: float = 5.0) -> tuple[int, int]:
    """Block until a slot is free; returns (slot, fd holding its lock).

    One job chooses at a time (choosing.lock): it tries every slot's lock, keeps the chosen one
    and lets the others go, so no other job's choice sees a slot held only for the probe."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    choosing = os.open(LOCK_DIR / "choosing.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            fcntl.flock(choosing, fcntl.LOCK_EX)
            free = {slot: fd for slot in range(len(slots)) if (fd := _lock(slot)) is not None}
            chosen = choose_slot(slots, set(range(len(slots))) - set(free))
            for slot, fd in free.items():
                if slot != chosen:
                    os.close(fd)  # closing releases the lock
            fcntl.flock(choosing, fcntl.LOCK_UN)
            if chosen is not None:
                return chosen, free[chosen]
            print(f"gpu_slot: all {len(slots)} GPU slots busy; waiting", file=sys.stderr, flush=True)
            time.sleep(wait_s)
    finally:
        os.close(choosing)


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: gpu_slot.py CMD [ARGS...]")
    slots = [gpu for gpu in os.environ.get(SLOTS_ENV, "").split(",") if gpu]
    if slots:
        slot, fd = take_slot(slots)
        os.set_inheritable(fd, True)  # the lock lives as long as the command does
        os.environ["CUDA_VISIBLE_DEVICES"] = slots[slot]
        os.environ["DRM_GPU_SLOT"] = str(slot)  # for the log
        print(f"gpu_slot: slot {slot} -> GPU {slots[slot]}", file=sys.stderr, flush=True)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
