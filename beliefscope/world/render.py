"""Offscreen MuJoCo rendering: the GL backend choice and a lean renderer.

`MUJOCO_GL` must be set before `mujoco` is first imported, so every module of the world gets
MuJoCo through `load_mujoco()`. EGL is the default (Mesa llvmpipe on a CPU machine, the GPU
where there is one); OSMesa is the fallback when EGL is missing or fails to start. Shadows are
off: the default shadow map costs ~30 ms per frame on a software renderer. The scene turns
multisampling off too (`offsamples="0"`): resolving it costs llvmpipe ~30x the render itself,
and segmentation colours must not be blended at edges.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from types import ModuleType
from typing import Any

import numpy as np

from beliefscope.errors import BeliefscopeError


class RenderError(BeliefscopeError):
    """No OpenGL backend could render offscreen."""

    status = 500


def load_mujoco() -> ModuleType:
    """Import MuJoCo with an offscreen GL backend chosen (EGL, else OSMesa)."""
    if "MUJOCO_GL" not in os.environ:  # the one place the world reads the environment
        has_egl = ctypes.util.find_library("EGL") is not None
        osmesa_only = not has_egl and ctypes.util.find_library("OSMesa") is not None
        os.environ["MUJOCO_GL"] = "osmesa" if osmesa_only else "egl"
    import mujoco

    return mujoco


def _gl_context(width: int, height: int) -> Any:
    """A GL context of the chosen backend (not left current); falls back to OSMesa if EGL fails."""
    backend = os.environ.get("MUJOCO_GL", "egl").lower()
    try:
        return _make_context(backend, width, height)
    except Exception as err:  # noqa: BLE001 - any EGL start failure means: try OSMesa
        if backend != "egl" or ctypes.util.find_library("OSMesa") is None:
            raise RenderError(
                f"offscreen OpenGL ({backend}) failed: {err}; set MUJOCO_GL=egl or osmesa "
                "(osmesa needs the libosmesa6 package)"
            ) from err
    # PyOpenGL fixes its platform on first import: forget it and load it again for OSMesa.
    for name in [m for m in sys.modules if m == "OpenGL" or m.startswith("OpenGL.")]:
        del sys.modules[name]
    os.environ["MUJOCO_GL"] = os.environ["PYOPENGL_PLATFORM"] = "osmesa"
    return _make_context("osmesa", width, height)


def _make_context(backend: str, width: int, height: int) -> Any:
    if backend == "osmesa":
        from mujoco.osmesa import GLContext
    else:
        from mujoco.egl import GLContext
    context = GLContext(width, height)
    with context.as_current():  # fails here, not later, when the backend cannot render
        pass
    return context


class Renderer:
    """Renders one model from named cameras: RGB frames and per-geom pixel counts.

    Creating one costs 40-180 ms (GL context + textures): create once, reuse for every step.
    `shared=True` for use from several threads (one at a time: callers hold a lock); the
    context is then current only while drawing.
    """

    def __init__(self, model: Any, height: int, width: int, *, shared: bool = False) -> None:
        mujoco = load_mujoco()
        self._mj = mujoco
        self.model = model
        self.height, self.width = height, width
        self._gl = _gl_context(width, height)
        self._scene = mujoco.MjvScene(model, maxgeom=100)
        if not shared:  # stays current in this thread: each draw skips two context switches
            self._gl.make_current()
        with self._gl.as_current():
            self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._rect = mujoco.MjrRect(0, 0, width, height)
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._perturb = mujoco.MjvPerturb()
        self._rgb = np.empty((height, width, 3), np.uint8)
        self._options: dict[tuple[int, ...], Any] = {}

    def _update(self, data: Any, camera: str, hide_groups: tuple[int, ...]) -> None:
        mj = self._mj
        self._camera.fixedcamid = mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_CAMERA, camera)
        if self._camera.fixedcamid < 0:
            raise BeliefscopeError(f"the scene has no camera {camera!r}")
        option = self._options.get(hide_groups)
        if option is None:
            option = mj.MjvOption()
            for group in hide_groups:
                option.geomgroup[group] = 0
            self._options[hide_groups] = option
        mj.mjv_updateScene(
            self.model,
            data,
            option,
            self._perturb,
            self._camera,
            mj.mjtCatBit.mjCAT_ALL,
            self._scene,
        )
        self._scene.flags[mj.mjtRndFlag.mjRND_SHADOW] = 0
        self._scene.flags[mj.mjtRndFlag.mjRND_REFLECTION] = 0
        self._scene.flags[mj.mjtRndFlag.mjRND_SKYBOX] = 0

    def _draw(self, segment: bool) -> np.ndarray:
        mj = self._mj
        self._scene.flags[mj.mjtRndFlag.mjRND_SEGMENT] = segment
        self._scene.flags[mj.mjtRndFlag.mjRND_IDCOLOR] = segment
        # A shared renderer is current only while drawing: EGL binds a context to one thread.
        with self._gl.as_current():
            mj.mjr_render(self._rect, self._scene, self._context)
            mj.mjr_readPixels(self._rgb, None, self._rect, self._context)
        return self._rgb[::-1]  # OpenGL rows run bottom-up

    def rgb(self, data: Any, camera: str, hide_groups: tuple[int, ...] = ()) -> np.ndarray:
        """(H, W, 3) uint8 frame from a named camera."""
        self._update(data, camera, hide_groups)
        return self._draw(segment=False).copy()

    def geom_mask(
        self, data: Any, camera: str, geom_ids: tuple[int, ...], hide_groups: tuple[int, ...] = ()
    ) -> np.ndarray:
        """(len(geom_ids), H, W) bool: where each geom is the nearest surface."""
        self._update(data, camera, hide_groups)
        # Segmentation colours encode (scene geom index + 1) in the RGB bytes.
        code = self._draw(segment=True).astype(np.int32)
        seg = code[..., 0] | (code[..., 1] << 8) | (code[..., 2] << 16)
        masks = np.zeros((len(geom_ids), self.height, self.width), bool)
        for i in range(self._scene.ngeom):
            geom = self._scene.geoms[i]
            if geom.objtype == self._mj.mjtObj.mjOBJ_GEOM and geom.objid in geom_ids:
                masks[geom_ids.index(geom.objid)] |= seg == geom.segid + 1
        return masks

    def close(self) -> None:
        with self._gl.as_current():
            self._context.free()
        self._gl.free()
