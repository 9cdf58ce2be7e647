"""Headless MuJoCo rendering: respect the user's MUJOCO_GL, else pick one that works here.

The backend must be chosen before dm_control is imported, and a failing backend can only be
detected by trying it, so each candidate is probed in a short subprocess.
"""
import os
import subprocess
import sys

CANDIDATES = ("egl", "osmesa")
KNOWN = (*CANDIDATES, "glfw")  # what dm_control accepts; glfw needs a display


class RenderingUnavailable(RuntimeError):
    """No MuJoCo rendering backend renders here; the message says what to install or set."""
_PROBE = (
    "from dm_control import mujoco\n"
    "p = mujoco.Physics.from_xml_string('<mujoco><worldbody><light pos=\"0 0 1\"/>"
    "<geom type=\"sphere\" size=\".1\"/></worldbody></mujoco>')\n"
    "assert p.render(8, 8).shape == (8, 8, 3)\n"
)


def _works(backend: str) -> tuple[bool, str]:
    env = {**os.environ, "MUJOCO_GL": backend}
    if backend == "osmesa":
        env.setdefault("PYOPENGL_PLATFORM", "osmesa")
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                              text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    last_line = (done.stderr.strip().splitlines() or [""])[-1]
    return done.returncode == 0, last_line


def choose_backend() -> str:
    """Set MUJOCO_GL for this process and return a line saying which backend and why.

    A value the user set is kept (not probed: that costs seconds per start), but one that cannot
    work is refused here rather than at the first render, after everything is built."""
    user_value = os.environ.get("MUJOCO_GL")
    if user_value:
        if user_value not in KNOWN:
            raise ValueError(f"MUJOCO_GL={user_value!r} is invalid: must be egl or osmesa (headless) "
                             "or glfw (with a display); unset it to let the cell choose one that renders here")
        if user_value == "glfw" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise RenderingUnavailable("MUJOCO_GL=glfw needs a display and there is none (DISPLAY is "
                                       "unset); use egl or osmesa, or unset MUJOCO_GL")
        return f"MUJOCO_GL={user_value} (set by the user)"
    errors = []
    for backend in CANDIDATES:
        ok, err = _works(backend)
        if ok:
            os.environ["MUJOCO_GL"] = backend
            if backend == "osmesa":
                os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
            return f"MUJOCO_GL={backend} (first headless backend that rendered here)"
        errors.append(f"{backend}: {err}")
    raise RenderingUnavailable(
        "no headless MuJoCo rendering backend works here (" + "; ".join(errors) + "). "
        "Install EGL (Debian: libegl1 libegl-mesa0 libgl1-mesa-dri; on a GPU node the NVIDIA "
        "driver's EGL) or OSMesa (Debian: libosmesa6), or set MUJOCO_GL yourself."
    )
