"""Headless MuJoCo rendering: respect the user's MUJOCO_GL, else pick one that works here; with
EGL, render on the cell's own GPU.

The backend must be chosen before dm_control is imported, and a failing backend can only be
detected by trying it, so each candidate is probed in a short subprocess (`python -m
drm.cell.rendering`, about a second) that also names what it rendered with: the EGL device and
the GL_RENDERER of the context that drew the frame.

EGL numbers its devices itself: eglQueryDevicesEXT lists every vendor's devices (Mesa's
software one included) in its own order, and some drivers filter the list by
CUDA_VISIBLE_DEVICES, so the CUDA index is no EGL index. A cell on cuda:N renders on the EGL
device with the same PCI address (EGL_EXT_device_drm's card in sysfs), else the one whose
EGL_CUDA_DEVICE_NV is N (that attribute is the process's CUDA ordinal, after
CUDA_VISIBLE_DEVICES, as nvdiffrast and pytorch3d read it); the PCI address comes first because
it names the card whatever the numbering. A CPU cell keeps dm_control's default device.
"""
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

CANDIDATES = ("egl", "osmesa")
KNOWN = (*CANDIDATES, "glfw")  # what dm_control accepts; glfw needs a display
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast")  # Mesa's CPU rasterizers, as GL_RENDERER names them
DEVICE_VARIABLE = "MUJOCO_EGL_DEVICE_ID"  # dm_control's index into eglQueryDevicesEXT's list

# EGL enumerants (Khronos eglext.h).
_EGL_EXTENSIONS = 0x3055
_EGL_DRM_DEVICE_FILE_EXT = 0x3233
_EGL_DRM_RENDER_NODE_FILE_EXT = 0x3377
_EGL_RENDERER_EXT = 0x335F
_EGL_CUDA_DEVICE_NV = 0x323A
_PCI_ADDRESS = re.compile(r"^([0-9a-f]+):([0-9a-f]+):([0-9a-f]+)(?:\.[0-7])?$")


class RenderingUnavailable(RuntimeError):
    """No MuJoCo rendering backend renders here; the message says what to install or set."""


@dataclass(frozen=True)
class EglDevice:
    """One entry of eglQueryDevicesEXT's list, as far as its driver describes it."""
    index: int
    extensions: tuple[str, ...] = ()
    cuda: int | None = None  # EGL_CUDA_DEVICE_NV (NVIDIA's driver)
    drm_file: str | None = None  # EGL_DRM_DEVICE_FILE_EXT, else the render node
    pci: str | None = None  # that DRM device's PCI address from sysfs, e.g. 0000:65:00.0
    renderer: str | None = None  # EGL_RENDERER_EXT, where the driver names it

    @property
    def software(self) -> bool:
        return "EGL_MESA_device_software" in self.extensions

    def describe(self) -> str:
        parts = ["Mesa software" if self.software else (self.renderer or "hardware")]
        parts += [f"{k} {v}" for k, v in (("cuda", self.cuda), ("pci", self.pci), ("drm", self.drm_file))
                  if v is not None]
        return f"{self.index}: {', '.join(parts)}"


@dataclass(frozen=True)
class CudaDevice:
    """The GPU a cell computes on: torch's index as this process numbers it (after
    CUDA_VISIBLE_DEVICES) and its PCI address where torch gives one."""
    index: int
    pci: str | None = None

    @classmethod
    def of(cls, device) -> "CudaDevice":
        """Of a torch.device of type cuda (initialises CUDA: call it for CUDA cells only)."""
        import torch

        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        try:
            pci = f"{props.pci_domain_id:04x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}"
        except AttributeError:  # a torch without the PCI fields
            pci = None
        return cls(index, pci)


@dataclass(frozen=True)
class EglChoice:
    """The EGL device to render on (None: dm_control's default, the first that initialises),
    how it was chosen, and a warning line when a CUDA cell's GPU was not found."""
    index: int | None
    how: str
    warning: str | None = None


def _pci_key(address: str | None) -> tuple[int, int, int] | None:
    """Domain, bus and device of a PCI address (the function is left out: torch gives none)."""
    found = _PCI_ADDRESS.match((address or "").strip().lower())
    return tuple(int(x, 16) for x in found.groups()) if found else None


def choose_egl_device(devices: list[EglDevice], cuda: CudaDevice | None,
                      user_value: str | None = None) -> EglChoice:
    """Which of `devices` (eglQueryDevicesEXT's list) a cell renders on. A user's
    MUJOCO_EGL_DEVICE_ID is kept if it names one of them (ValueError if not); a CPU cell
    (cuda None) takes dm_control's default; a CUDA cell the device of its GPU, by PCI address,
    else by EGL_CUDA_DEVICE_NV, else the first hardware device, with a warning."""
    listed = "; ".join(d.describe() for d in devices) or "none"
    if user_value is not None:
        if not re.fullmatch(r"\s*\d+\s*", user_value) or int(user_value) >= len(devices):
            raise ValueError(f"{DEVICE_VARIABLE}={user_value!r} is invalid: must be the index of one of "
                             f"the {len(devices)} EGL devices listed here ({listed}); unset it to let "
                             "the cell render on its own GPU")
        return EglChoice(int(user_value), f"{DEVICE_VARIABLE}={int(user_value)} set by the user")
    if cuda is None:
        return EglChoice(None, "dm_control's default, the first that initialises (device=cpu)")
    target = _pci_key(cuda.pci)
    for device in devices:
        if target is not None and _pci_key(device.pci) == target:
            return EglChoice(device.index, f"PCI address {device.pci} of cuda:{cuda.index}")
    for device in devices:
        if device.cuda == cuda.index:
            return EglChoice(device.index, f"EGL_CUDA_DEVICE_NV {device.cuda} = cuda:{cuda.index}")
    hardware = [d.index for d in devices if not d.software]
    index = hardware[0] if hardware else None
    where = f"EGL device {index}, the first hardware one" if hardware else "dm_control's default EGL device"
    gpu = f"cuda:{cuda.index}" + (f" (PCI {cuda.pci})" if cuda.pci else "")
    return EglChoice(index, f"no EGL device matched cuda:{cuda.index}; {where}",
                     f"no EGL device is this cell's GPU {gpu} (EGL lists: {listed}); rendering on {where}, "
                     f"which may be another GPU or the CPU; set {DEVICE_VARIABLE} to choose")


def software_warning(cuda_cell: bool, backend: str, renderer: str | None) -> str | None:
    """The line a GPU cell that renders on the CPU (OSMesa, or a Mesa software EGL device)
    must show: every frame drawn by the CPU slows the whole cell, silently otherwise."""
    if not cuda_cell:
        return None
    named = (renderer or "").lower()
    if backend != "osmesa" and not any(name in named for name in SOFTWARE_RENDERERS):
        return None
    return (f"device=cuda but frames are rendered on the CPU (MUJOCO_GL={backend}, GL_RENDERER "
            f"{renderer!r}), which slows every step; install the NVIDIA driver's EGL library "
            "(libEGL_nvidia, listed in /usr/share/glvnd/egl_vendor.d) or set MUJOCO_EGL_DEVICE_ID "
            "to the GPU's EGL device")


# ---------------------------------------------------------------- the probe (a subprocess)
def egl_devices() -> list[EglDevice]:
    """eglQueryDevicesEXT's list through ctypes ([] without libEGL or device enumeration)."""
    import ctypes

    try:
        lib = ctypes.CDLL("libEGL.so.1")
    except OSError:
        return []
    lib.eglGetProcAddress.restype = ctypes.c_void_p
    lib.eglGetProcAddress.argtypes = [ctypes.c_char_p]

    def function(name, restype, *argtypes):
        address = lib.eglGetProcAddress(name.encode())
        return ctypes.CFUNCTYPE(restype, *argtypes)(address) if address else None

    query_devices = function("eglQueryDevicesEXT", ctypes.c_uint, ctypes.c_int32,
                             ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int32))
    query_string = function("eglQueryDeviceStringEXT", ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int32)
    query_attrib = function("eglQueryDeviceAttribEXT", ctypes.c_uint, ctypes.c_void_p, ctypes.c_int32,
                            ctypes.POINTER(ctypes.c_ssize_t))
    count = ctypes.c_int32(0)
    if not (query_devices and query_string and query_attrib):
        return []
    if not query_devices(0, None, ctypes.byref(count)):
        return []
    handles = (ctypes.c_void_p * count.value)()
    if not query_devices(count.value, handles, ctypes.byref(count)):
        return []

    def string(handle, name):
        value = query_string(handle, name)
        return value.decode(errors="replace") if value else None

    found = []
    for index in range(count.value):
        handle = handles[index]
        extensions = tuple((string(handle, _EGL_EXTENSIONS) or "").split())
        cuda = drm_file = renderer = None
        if "EGL_NV_device_cuda" in extensions:
            value = ctypes.c_ssize_t(-1)
            if query_attrib(handle, _EGL_CUDA_DEVICE_NV, ctypes.byref(value)) and value.value >= 0:
                cuda = value.value
        if "EGL_EXT_device_drm" in extensions:
            drm_file = string(handle, _EGL_DRM_DEVICE_FILE_EXT)
        if drm_file is None and "EGL_EXT_device_drm_render_node" in extensions:
            drm_file = string(handle, _EGL_DRM_RENDER_NODE_FILE_EXT)
        if "EGL_EXT_device_query_name" in extensions:
            renderer = string(handle, _EGL_RENDERER_EXT)
        found.append(EglDevice(index, extensions, cuda, drm_file, _pci_of(drm_file), renderer))
    return found


def _pci_of(drm_file: str | None) -> str | None:
    """/dev/dri/card1 -> its PCI address, from /sys/class/drm/card1/device (None if not PCI)."""
    if not drm_file:
        return None
    address = Path(os.path.realpath(f"/sys/class/drm/{Path(drm_file).name}/device")).name
    return address if _pci_key(address) else None


_PROBE_XML = ('<mujoco><worldbody><light pos="0 0 1"/><geom type="sphere" size=".1"/>'
              '</worldbody></mujoco>')


def use_backend(backend: str) -> None:
    """MUJOCO_GL for this process, and PyOpenGL's platform to match: dm_control refuses EGL or
    OSMesa when PYOPENGL_PLATFORM names the other, and an earlier import of dm_control in the
    same process (or a parent's) leaves its own value there."""
    os.environ["MUJOCO_GL"] = backend
    os.environ["PYOPENGL_PLATFORM"] = backend


def _probe_main(backend: str, cuda_json: str) -> None:
    """In the probe subprocess: choose the EGL device, render one frame with `backend`, and
    print what rendered it as JSON (or the refusal of a bad MUJOCO_EGL_DEVICE_ID)."""
    use_backend(backend)
    report = {}
    if backend == "egl":
        devices = egl_devices()
        cuda = json.loads(cuda_json)
        try:
            choice = choose_egl_device(devices, cuda and CudaDevice(**cuda), os.environ.get(DEVICE_VARIABLE))
        except ValueError as err:
            print(json.dumps({"refused": str(err)}), flush=True)
            os._exit(0)
        if choice.index is not None:
            os.environ[DEVICE_VARIABLE] = str(choice.index)
        report.update(devices=[{**asdict(d), "software": d.software} for d in devices], choice=asdict(choice))
    from dm_control import mujoco
    from OpenGL import GL

    physics = mujoco.Physics.from_xml_string(_PROBE_XML)
    assert physics.render(8, 8).shape == (8, 8, 3)
    with physics.contexts.gl.make_current() as ctx:
        report["renderer"] = ctx.call(GL.glGetString, GL.GL_RENDERER).decode(errors="replace")
    print(json.dumps(report), flush=True)
    os._exit(0)  # skips dm_control's teardown at exit, which only adds noise here


def _probe(backend: str, cuda: CudaDevice | None) -> tuple[dict | None, str]:
    """What the probe found, or None and the last line of its error."""
    command = [sys.executable, "-m", "drm.cell.rendering", backend, json.dumps(cuda and asdict(cuda))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parents[2])
    except subprocess.TimeoutExpired:
        return None, "timed out"
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        try:
            return json.loads(lines[-1]), ""
        except ValueError:
            return None, f"unreadable probe output: {lines[-1][:200]!r}"
    return None, (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]


# ---------------------------------------------------------------- the choice
@dataclass(frozen=True)
class Rendering:
    """What draws the cell's frames: the backend and why, the EGL device and how it was chosen,
    the GL_RENDERER that drew the probe's frame, EGL's device list (meta.json's `rendering`)."""
    mujoco_gl: str
    reason: str
    gl_renderer: str | None = None
    egl_device: int | None = None
    egl_device_chosen_by: str | None = None
    egl_devices: tuple = ()
    warnings: tuple[str, ...] = ()

    @property
    def line(self) -> str:
        return f"MUJOCO_GL={self.mujoco_gl} ({self.reason})"

    def __str__(self) -> str:
        """The train.log start line's part: backend, EGL device, GL_RENDERER."""
        how = self.egl_device_chosen_by
        device = ("" if how is None else f", EGL device: {how}" if self.egl_device is None
                  else f", EGL device {self.egl_device} ({how})")
        return f"{self.line}{device}, GL_RENDERER {self.gl_renderer!r}"

    def record(self) -> dict:
        return {**asdict(self), "egl_devices": list(self.egl_devices), "warnings": list(self.warnings)}


def choose(cuda: CudaDevice | None = None) -> Rendering:
    """Set MUJOCO_GL (and MUJOCO_EGL_DEVICE_ID for EGL on a GPU) for this process, before
    dm_control is imported, and say what renders. `cuda`: the GPU a CUDA cell computes on.

    A backend the user set is kept, but one that cannot work is refused here rather than at
    the first render, after everything is built; so is a MUJOCO_EGL_DEVICE_ID that names no
    EGL device."""
    user_value = os.environ.get("MUJOCO_GL")
    if user_value:
        if user_value not in KNOWN:
            raise ValueError(f"MUJOCO_GL={user_value!r} is invalid: must be egl or osmesa (headless) or "
                             "glfw (with a display); unset it to let the cell choose one that renders here")
        if user_value == "glfw":
            if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
                raise RenderingUnavailable("MUJOCO_GL=glfw needs a display and there is none (DISPLAY is "
                                           "unset); use egl or osmesa, or unset MUJOCO_GL")
            return Rendering("glfw", "set by the user; not probed")
        found, err = _probe(user_value, cuda)
        if found is None:
            raise RenderingUnavailable(f"MUJOCO_GL={user_value} (set by the user) does not render here: "
                                       f"{err}; unset it to let the cell choose one that renders here")
        use_backend(user_value)
        return _rendering(user_value, "set by the user", found, cuda)
    errors = []
    for backend in CANDIDATES:
        found, err = _probe(backend, cuda)
        if found is not None:
            use_backend(backend)
            return _rendering(backend, "; ".join(["first headless backend that rendered here", *errors]),
                              found, cuda)
        errors.append(f"{backend}: {err}")
    raise RenderingUnavailable(
        "no headless MuJoCo rendering backend works here (" + "; ".join(errors) + "). "
        "Install EGL (Debian: libegl1 libegl-mesa0 libgl1-mesa-dri; on a GPU node the NVIDIA "
        "driver's EGL) or OSMesa (Debian: libosmesa6), or set MUJOCO_GL yourself."
    )


def _rendering(backend: str, reason: str, found: dict, cuda: CudaDevice | None) -> Rendering:
    """The probe's report as a Rendering; the chosen EGL device is set for this process too."""
    if "refused" in found:
        raise ValueError(found["refused"])
    choice = found.get("choice") or {}
    if choice.get("index") is not None:
        os.environ[DEVICE_VARIABLE] = str(choice["index"])
    warnings = (choice.get("warning"), software_warning(cuda is not None, backend, found["renderer"]))
    return Rendering(backend, reason, found["renderer"], choice.get("index"), choice.get("how"),
                     tuple(found.get("devices", ())), tuple(w for w in warnings if w))


def choose_backend() -> str:
    """`choose` for a process that renders on no particular GPU (benchmarks, tests): the line."""
    return choose().line


if __name__ == "__main__":
    _probe_main(*sys.argv[1:])
