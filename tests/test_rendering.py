"""Which EGL device renders a cell's frames, what meta.json and train.log say about it, and the
warning when a GPU cell renders in software. The chooser is a pure function over EGL's device
list (table-driven here, GPU machines included); the rest runs the real probe and a real cell
on this machine's EGL (Mesa's software device)."""
import json
import os
import subprocess
import sys

import pytest

from drm.cell.rendering import (
    SOFTWARE_RENDERERS, CudaDevice, EglDevice, choose, choose_egl_device, egl_devices, software_warning,
)
from helpers import REPO, cell_command, run_cell

PCI_A, PCI_B, PCI_OTHER = "0000:17:00.0", "0000:65:00.0", "0000:03:00.0"
MESA_EXTENSIONS = ("EGL_MESA_device_software", "EGL_EXT_device_drm_render_node")
NVIDIA_EXTENSIONS = ("EGL_NV_device_cuda", "EGL_EXT_device_drm")


def mesa(index):
    return EglDevice(index, MESA_EXTENSIONS)


def nvidia(index, cuda, pci=None):
    """An NVIDIA EGL device; pci None: no nvidia-drm, so no DRM card to find its address by."""
    return EglDevice(index, NVIDIA_EXTENSIONS, cuda=cuda, drm_file=pci and f"/dev/dri/card{index}", pci=pci)


def torch_pci(address):
    """The address as CudaDevice.of writes torch's fields: domain:bus:device, no function."""
    return address.rsplit(".", 1)[0]


# (case, EGL's device list, the cell's CUDA device, EGL index expected, how it was matched)
MATCHED = [
    ("Mesa listed first, GPU 0", [mesa(0), nvidia(1, 0, PCI_A), nvidia(2, 1, PCI_B)],
     CudaDevice(0, torch_pci(PCI_A)), 1, "PCI address"),
    ("Mesa listed first, GPU 1", [mesa(0), nvidia(1, 0, PCI_A), nvidia(2, 1, PCI_B)],
     CudaDevice(1, torch_pci(PCI_B)), 2, "PCI address"),
    ("NVIDIA listed first, Mesa last", [nvidia(0, 0, PCI_A), nvidia(1, 1, PCI_B), mesa(2)],
     CudaDevice(1, torch_pci(PCI_B)), 1, "PCI address"),
    ("EGL's order is not CUDA's", [mesa(0), nvidia(1, 1, PCI_B), nvidia(2, 0, PCI_A)],
     CudaDevice(0, torch_pci(PCI_A)), 2, "PCI address"),
    ("driver filters by CUDA_VISIBLE_DEVICES=1: one GPU, cuda:0 here",
     [nvidia(0, 0, PCI_B), mesa(1)], CudaDevice(0, torch_pci(PCI_B)), 0, "PCI address"),
    ("PCI address case and function ignored", [mesa(0), nvidia(1, 0, "0000:AB:00.0")],
     CudaDevice(0, "0000:ab:00"), 1, "PCI address"),
    ("no DRM card (no nvidia-drm): by EGL_CUDA_DEVICE_NV", [mesa(0), nvidia(1, 0), nvidia(2, 1)],
     CudaDevice(1, torch_pci(PCI_B)), 2, "EGL_CUDA_DEVICE_NV 1 = cuda:1"),
    ("torch gives no PCI address: by EGL_CUDA_DEVICE_NV", [nvidia(0, 1, PCI_B), nvidia(1, 0, PCI_A), mesa(2)],
     CudaDevice(0, None), 1, "EGL_CUDA_DEVICE_NV 0 = cuda:0"),
    ("the PCI address wins over a CUDA ordinal in another numbering",
     [mesa(0), nvidia(1, 0, PCI_B), nvidia(2, 1, PCI_A)], CudaDevice(0, torch_pci(PCI_A)), 2, "PCI address"),
]


@pytest.mark.parametrize("case, devices, cuda, index, how", MATCHED, ids=[c[0] for c in MATCHED])
def test_a_cuda_cell_renders_on_the_egl_device_of_its_gpu(case, devices, cuda, index, how):
    choice = choose_egl_device(devices, cuda)
    assert (choice.index, choice.warning) == (index, None)
    assert how in choice.how and f"cuda:{cuda.index}" in choice.how


# (case, EGL's device list, EGL index expected: the first hardware one, else dm_control's default)
UNMATCHED = [
    ("another vendor's card only", [mesa(0), EglDevice(1, ("EGL_EXT_device_drm",), drm_file="/dev/dri/card0",
                                                         pci=PCI_OTHER)], 1),
    ("NVIDIA devices of other GPUs", [mesa(0), nvidia(1, 1, PCI_B)], 1),
    ("Mesa's software device only", [mesa(0)], None),
    ("EGL lists no device", [], None),
]


@pytest.mark.parametrize("case, devices, index", UNMATCHED, ids=[c[0] for c in UNMATCHED])
def test_a_cuda_cell_whose_gpu_egl_does_not_list_falls_back_with_a_warning(case, devices, index):
    choice = choose_egl_device(devices, CudaDevice(0, torch_pci(PCI_A)))
    assert choice.index == index
    assert "no EGL device matched cuda:0" in choice.how
    assert choice.warning and "\n" not in choice.warning
    assert "cuda:0 (PCI 0000:17:00)" in choice.warning and "MUJOCO_EGL_DEVICE_ID" in choice.warning


def test_a_cpu_cell_keeps_dm_controls_default_device():
    choice = choose_egl_device([nvidia(0, 0, PCI_A), mesa(1)], None)
    assert (choice.index, choice.warning) == (None, None) and "device=cpu" in choice.how


@pytest.mark.parametrize("cuda", [None, CudaDevice(0, torch_pci(PCI_A))])
def test_a_user_set_egl_device_is_kept(cuda):
    choice = choose_egl_device([mesa(0), nvidia(1, 0, PCI_A), nvidia(2, 1, PCI_B)], cuda, "2")
    assert (choice.index, choice.warning) == (2, None) and "set by the user" in choice.how


@pytest.mark.parametrize("value", ["abc", "-1", "", "1.0", "3"])
def test_an_egl_device_that_names_no_listed_device_is_refused(value):
    with pytest.raises(ValueError) as refused:
        choose_egl_device([mesa(0), nvidia(1, 0, PCI_A), nvidia(2, 1, PCI_B)], None, value)
    message = str(refused.value)
    assert message.startswith(f"MUJOCO_EGL_DEVICE_ID={value!r} is invalid") and "\n" not in message
    assert "3 EGL devices listed here (0: Mesa software; 1: hardware, cuda 0" in message


# (cuda cell, MUJOCO_GL, GL_RENDERER, warned)
SOFTWARE = [
    (True, "egl", "llvmpipe (LLVM 15.0.6, 256 bits)", True),
    (True, "egl", "softpipe", True),
    (True, "egl", "Mesa swrast", True),
    (True, "osmesa", "llvmpipe (LLVM 15.0.6, 256 bits)", True),
    (True, "osmesa", None, True),
    (True, "egl", "NVIDIA H100 80GB HBM3/PCIe/SSE2", False),
    (True, "glfw", None, False),  # glfw is not probed: nothing known to warn about
    (False, "egl", "llvmpipe (LLVM 15.0.6, 256 bits)", False),
    (False, "osmesa", "llvmpipe (LLVM 15.0.6, 256 bits)", False),
]


@pytest.mark.parametrize("cuda_cell, backend, renderer, warned", SOFTWARE)
def test_a_gpu_cell_rendering_in_software_is_warned(cuda_cell, backend, renderer, warned):
    line = software_warning(cuda_cell, backend, renderer)
    assert bool(line) == warned
    if warned:
        assert "\n" not in line and f"MUJOCO_GL={backend}" in line and repr(renderer) in line


# ---------------------------------------------------------------- this machine's EGL, for real
def test_the_real_enumeration_lists_mesas_software_device():
    devices = egl_devices()
    assert [d.index for d in devices] == list(range(len(devices)))
    software = [d for d in devices if d.software]
    assert software, f"scripts/setup.sh installs Mesa's EGL; EGL lists {devices}"
    assert all(d.cuda is None and d.pci is None for d in software)


@pytest.fixture
def unset_rendering(monkeypatch):
    """Neither MUJOCO_GL nor MUJOCO_EGL_DEVICE_ID set; whatever `choose` sets is undone after."""
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("MUJOCO_EGL_DEVICE_ID", raising=False)


def test_the_probe_names_the_renderer_that_drew_its_frame(unset_rendering):
    rendering = choose()
    assert rendering.mujoco_gl == os.environ["MUJOCO_GL"] == "egl"
    assert [d["index"] for d in rendering.egl_devices] == [d.index for d in egl_devices()]
    assert rendering.gl_renderer and rendering.warnings == ()
    if all(d["software"] for d in rendering.egl_devices):
        assert any(name in rendering.gl_renderer for name in SOFTWARE_RENDERERS)
    assert f"GL_RENDERER {rendering.gl_renderer!r}" in str(rendering)


def test_a_cuda_cell_without_its_gpu_in_egl_is_warned_twice(unset_rendering):
    """A CUDA device EGL does not list (none here): the real probe falls back and the cell
    would warn that it renders on the CPU."""
    if any(not d.software for d in egl_devices()):
        pytest.skip("this machine's EGL lists a hardware device")
    rendering = choose(CudaDevice(0, torch_pci(PCI_A)))
    assert len(rendering.warnings) == 2
    assert "no EGL device is this cell's GPU cuda:0" in rendering.warnings[0]
    assert "device=cuda but frames are rendered on the CPU" in rendering.warnings[1]
    assert "MUJOCO_EGL_DEVICE_ID" not in os.environ, "nothing to set: dm_control's default renders"


def test_a_bad_egl_device_stops_the_cell_in_one_line(tmp_path):
    out = tmp_path / "cell"
    env = {**os.environ, "MUJOCO_GL": "egl", "MUJOCO_EGL_DEVICE_ID": "7"}
    done = subprocess.run(cell_command(out, "drqv2", device="cpu", threads=1, num_train_frames=200,
                                       num_seed_frames=100, eval_every_frames=200, episode_frames=100,
                                       snapshot_every_frames=200, replay_buffer_size=1000),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    listed = "; ".join(d.describe() for d in egl_devices())
    assert line == (f"drm.train: error: MUJOCO_EGL_DEVICE_ID='7' is invalid: must be the index of one of "
                    f"the {len(egl_devices())} EGL devices listed here ({listed}); unset it to let the "
                    "cell render on its own GPU")
    assert not out.exists()


def test_a_cell_records_the_egl_device_and_renderer(tmp_path):
    out = tmp_path / "cell"
    run_cell(out, "drqv2", device="cpu", threads=1, num_train_frames=200, num_seed_frames=100,
             eval_every_frames=200, episode_frames=100, snapshot_every_frames=200, replay_buffer_size=1000,
             timeout=300)
    recorded = json.loads((out / "meta.json").read_text())["rendering"]
    probed = json.loads(subprocess.run(
        [sys.executable, "-m", "drm.cell.rendering", recorded["mujoco_gl"], "null"], cwd=REPO,
        capture_output=True, text=True, timeout=120).stdout.splitlines()[-1])
    assert recorded["gl_renderer"] == probed["renderer"]
    if recorded["mujoco_gl"] == "egl":
        assert recorded["egl_devices"] == probed["devices"]
        assert recorded["egl_device_chosen_by"] == probed["choice"]["how"]
    if all(d["software"] for d in recorded["egl_devices"]):
        assert any(name in recorded["gl_renderer"] for name in SOFTWARE_RENDERERS)
    assert recorded["warnings"] == []
    start = next(line for line in (out / "train.log").read_text().splitlines() if " start " in line)
    assert f"MUJOCO_GL={recorded['mujoco_gl']} (" in start
    assert f"GL_RENDERER {recorded['gl_renderer']!r}" in start
