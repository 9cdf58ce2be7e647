"""Snapshots that survive a kill, a full disk and a file (or a replay chunk) that cannot be read back.

`save` serializes in memory, writes a temp file, reads it back, and only then renames it into
place, keeping the snapshot it replaces as `<name>.prev.pt`: a run killed at any moment finds a
complete snapshot, a full disk leaves no partial file (the OSError keeps its errno, which
torch's own writer loses), and a snapshot that later proves unreadable has a fallback.
"""
import errno
import hashlib
import io
import os
import random
from pathlib import Path

import numpy as np
import torch

from drm.cell.replay import UNREADABLE


def rng_states(device: torch.device) -> dict:
    """Every generator the run draws from. CUDA's only for a cuda cell, and only its own
    device's: a CPU cell never initialises CUDA, and a snapshot does not depend on how many
    GPUs happened to be visible."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    return state


def cuda_rng_state(state: dict, device: torch.device) -> torch.Tensor | None:
    """The saved CUDA generator state for `device`. Snapshots before the per-device format
    kept one state per visible GPU (`cuda`); the cell ran on the first of them (cuda:0 unless
    the device named another), so that one is restored, however many GPUs are visible now."""
    if device.type != "cuda":
        return None
    if "cuda_device" in state:
        return state["cuda_device"]
    per_gpu = state.get("cuda") or []
    index = device.index or 0
    return per_gpu[index] if index < len(per_gpu) else None


def set_rng_states(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    cuda_state = cuda_rng_state(state, device)
    if cuda_state is not None:
        torch.cuda.set_rng_state(cuda_state, device)


def _nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version, from the file the driver itself provides."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    words = text.split()
    return next((w for w in words if w[:1].isdigit() and w.count(".") >= 1), None)


def compute_settings(device: torch.device) -> dict:
    """What decides a run's bits besides its config and seeds: a resumption that changes any of
    these continues the run, but no longer as an uninterrupted one would. On a GPU that includes
    the model, driver, CUDA and cuDNN versions and the float32 precision flags."""
    settings = {"torch_threads": torch.get_num_threads(), "device": str(device),
                "default_dtype": str(torch.get_default_dtype()),
                "float32_matmul_precision": torch.get_float32_matmul_precision(),
                "cudnn_deterministic": torch.backends.cudnn.deterministic,
                "cudnn_benchmark": torch.backends.cudnn.benchmark}
    if device.type == "cuda":
        settings.update({
            "gpu": torch.cuda.get_device_name(device), "nvidia_driver": _nvidia_driver(),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision,
            "cudnn_conv_fp32_precision": torch.backends.cudnn.conv.fp32_precision})
    return settings


def settings_changes(saved: dict, now: dict) -> list[str]:
    return [f"{key}={now.get(key)!r} (the snapshot was taken with {saved[key]!r})"
            for key in saved if saved[key] != now.get(key)]


def previous(path: Path) -> Path:
    """Where the snapshot before `path` is kept (snapshot.pt -> snapshot.prev.pt)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save(path: Path, state: dict) -> None:
    path, tmp = Path(path), Path(f"{path}.tmp")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getbuffer()
    try:
        _write_file(tmp, data)
        if hashlib.sha256(tmp.read_bytes()).digest() != hashlib.sha256(data).digest():
            raise OSError(errno.EIO, "the snapshot read back differs from what was written", str(tmp))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if path.exists():
        os.replace(path, previous(path))
    os.replace(tmp, path)


def _first_sentence(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]
    return text if len(text) <= 160 else text[:157] + "..."


def set_aside(path: Path) -> Path:
    """Moves a snapshot that cannot be resumed from to `<name>.unreadable`, so that the next
    save cannot rotate it over the good one; returns where it went."""
    bad = path.with_name(f"{path.name}{UNREADABLE}")
    os.replace(path, bad)
    return bad


def load_newest(path: Path, map_location="cpu") -> tuple[dict | None, Path | None, list[str]]:
    """The newest readable snapshot among `path` and its previous one, which file that was, and
    a note for each file that could not be read (set aside). `map_location` as torch.load's."""
    notes = []
    for candidate in (Path(path), previous(path)):
        if not candidate.exists():
            continue
        try:
            state = torch.load(candidate, map_location=map_location, weights_only=False)
            if not isinstance(state, dict) or "step" not in state:
                raise ValueError("not a snapshot of this harness")
            return state, candidate, notes
        except Exception as err:  # whatever torch.load or unpickling raises on a damaged file
            bad = set_aside(candidate)
            notes.append(f"{candidate} cannot be read ({_first_sentence(err)}); moved to {bad.name}")
    return None, None, notes
