"""Snapshots on GPUs: only the cell's own device's generator, and the GPU in the settings.

No GPU is needed: the CUDA calls a cuda cell makes are replaced by recorders, the rest is real.
"""
import torch

from drm.cell import snapshot

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_a_cpu_cell_saves_no_cuda_state_and_never_initialises_cuda(monkeypatch):
    touched = []
    for name in ("get_rng_state", "get_rng_state_all", "get_device_name", "init"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, _n=name, **k: touched.append(_n))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine
    state = snapshot.rng_states(CPU)
    settings = snapshot.compute_settings(CPU)
    snapshot.set_rng_states(state, CPU)
    assert touched == [] and set(state) == {"torch", "numpy", "python"}
    assert "gpu" not in settings


def test_a_cuda_cell_saves_and_restores_only_its_own_device(monkeypatch):
    own = torch.tensor([1, 2, 3], dtype=torch.uint8)
    restored = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": own)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": restored.append((s, device)))
    state = snapshot.rng_states(CUDA)
    assert torch.equal(state["cuda_device"], own) and "cuda" not in state
    snapshot.set_rng_states(state, CUDA)
    assert len(restored) == 1 and torch.equal(restored[0][0], own) and restored[0][1] == CUDA


def test_a_snapshot_from_a_two_gpu_run_resumes_on_one(monkeypatch):
    """Snapshots before the per-device format saved every visible GPU's state; the cell ran on
    the first. Resumed where one GPU is visible, that one state is restored (not all: IndexError)."""
    first, second = torch.tensor([7], dtype=torch.uint8), torch.tensor([9], dtype=torch.uint8)
    old = {**snapshot.rng_states(CPU), "cuda": [first, second]}
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": restored.append(s))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all",
                        lambda states: (_ for _ in ()).throw(IndexError("list index out of range")))
    snapshot.set_rng_states(old, CUDA)
    assert len(restored) == 1 and torch.equal(restored[0], first)
    assert torch.equal(snapshot.cuda_rng_state(old, torch.device("cuda:1")), second)
    assert snapshot.cuda_rng_state(old, CPU) is None


def test_the_gpu_model_driver_and_libraries_are_compute_settings(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    saved = snapshot.compute_settings(CUDA)
    assert {"gpu", "nvidia_driver", "cuda", "cudnn", "cudnn_conv_fp32_precision"} <= set(saved)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-40GB")
    changes = snapshot.settings_changes(saved, snapshot.compute_settings(CUDA))
    assert changes == ["gpu='NVIDIA A100-SXM4-40GB' (the snapshot was taken with 'NVIDIA H100 80GB HBM3')"]
