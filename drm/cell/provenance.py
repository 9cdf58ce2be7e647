"""Where a result came from: code, packages, machine, scheduler job, times (meta.json)."""
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import torch

PACKAGES = ("drm-repro", "torch", "mujoco", "dm_control", "numpy", "hydra-core", "omegaconf")


def git_state(repo: Path | None = None) -> dict:
    """The commit and dirtiness of `repo` (default: this harness's own checkout)."""
    repo = Path(__file__).resolve().parents[2] if repo is None else repo

    def git(*args):
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine(device: torch.device) -> dict:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    env = {k: os.environ.get(k) for k in ("MUJOCO_GL", "MUJOCO_EGL_DEVICE_ID", "CUDA_VISIBLE_DEVICES",
                                          "SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT")}
    return {"hostname": socket.gethostname(), "platform": platform.platform(),
            "python": sys.version.split()[0], "device": str(device), "gpu": gpu,
            "cpu_threads": torch.get_num_threads(), **{k.lower(): v for k, v in env.items()}}


def determinism() -> dict:
    """The determinism settings in force (drm.train.configure_determinism sets them)."""
    return {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision,
            "cudnn_conv_fp32_precision": torch.backends.cudnn.conv.fp32_precision,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}
