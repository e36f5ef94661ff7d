"""Pinhole geometry of MuJoCo's fixed cameras: world points to pixel coordinates."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)


def project(
    model: Any, data: Any, camera_id: int, points: np.ndarray, height: int, width: int
) -> np.ndarray:
    """(N, 3) world points -> (N, 2) pixel coordinates (x right, y down, (0, 0) = top-left
    corner of the image, so pixel (row r, col c) covers [c, c+1) x [r, r+1)).

    Points behind the camera come back as NaN.
    """
    assert points.ndim == 2 and points.shape[1] == 3, points.shape
    rotation = data.cam_xmat[camera_id].reshape(3, 3)  # columns: camera axes in world frame
    local = (points - data.cam_xpos[camera_id]) @ rotation  # (N, 3) in the camera frame
    depth = -local[:, 2]  # MuJoCo cameras look along their -z axis
    focal = 0.5 * height / math.tan(math.radians(model.cam_fovy[camera_id]) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = 0.5 * width + focal * local[:, 0] / depth
        y = 0.5 * height - focal * local[:, 1] / depth
    out = np.stack([x, y], axis=1)
    out[depth <= 0] = np.nan
    return out


def box_corners(model: Any, data: Any, geom_id: int) -> np.ndarray:
    """(8, 3) world corners of a box geom."""
    rotation = data.geom_xmat[geom_id].reshape(3, 3)
    return data.geom_xpos[geom_id] + (_SIGNS * model.geom_size[geom_id]) @ rotation.T


def pixel_bounds(pixels: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) of projected points; None when any lies behind the camera."""
    if np.isnan(pixels).any():
        return None
    (x0, y0), (x1, y1) = pixels.min(axis=0), pixels.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)
