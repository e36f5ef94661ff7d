"""OpenCV frame overlays: pure functions, arrays in and encoded JPEG/PNG bytes out.

Everything here works on RGB uint8 arrays (H, W, 3) and RGB colors; the only BGR in the module
is the conversion right before encoding, so callers never think about OpenCV's channel order.
Panels are upscaled with nearest-neighbour interpolation: a 64x64 observation stays crisp and
each model pixel stays a visible block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

ImageFormat = Literal["jpeg", "png"]
PANELS = ("recon", "pred", "error")
"""Side panels a frame may carry next to the observation, in display order."""
STRIP_PANELS = ("obs", *PANELS)
"""Columns a strip (`strip`) may hold, one per panel of the player."""
BELIEF_COLOR = (255, 64, 255)
"""The decoded belief of where the box is (magenta), drawn on ground-truth renders."""
FUTURES_COLOR = (64, 224, 255)
"""The imagined futures' mean path and spread (cyan)."""

REVIEW_COLORS: dict[str, tuple[int, int, int]] = {
    "open": (255, 176, 0),
    "needs_review": (255, 176, 0),
    "confirmed": (230, 40, 40),
    "dismissed": (140, 140, 140),
    "resolved": (40, 170, 80),
}
"""Border color (RGB) of a step inside a flag, by the flag's review state."""
OTHER_REVIEW_COLOR = (200, 60, 200)
ERROR_GAIN = 4.0
"""Absolute pixel error (in [0, 1]) times this gain maps to the color map's range: a fixed scale,
so heat maps of different steps and checkpoints compare by color."""

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_STRIP_BG = (24, 24, 28)
_TEXT = (235, 235, 235)


@dataclass(frozen=True)
class StepInfo:
    """What the text strip says about one step (None = not available)."""

    step: int
    kl: float | None = None
    correction: float | None = None
    flag_state: str | None = None
    """Review state of the flag covering this step (None: the step is inside no flag)."""
    label: str = ""
    """A caption for the row, e.g. the checkpoint it was rendered under."""


def as_uint8(image: np.ndarray) -> np.ndarray:
    """A frame (H, W, C) or frames (N, H, W, C) as 3-channel uint8: decoder means in [0, 1]
    are clipped and scaled; gray (H, W) and single-channel frames become three channels."""
    if image.ndim == 2:
        image = image[..., None]
    assert image.ndim in (3, 4), f"frame must be (H, W, C) or (N, H, W, C), got {image.shape}"
    if image.dtype != np.uint8:
        image = (np.clip(np.nan_to_num(image.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(
            np.uint8
        )
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    assert image.shape[-1] == 3, f"frame must have 1 or 3 channels, got {image.shape}"
    return image


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor (crisp blocks, no blur)."""
    if scale == 1:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)


def error_heatmap(observation: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Per-pixel |observation - prediction| (mean over channels) through the inferno map."""
    obs = as_uint8(observation).astype(np.float32) / 255.0
    pred = as_uint8(prediction).astype(np.float32) / 255.0
    assert obs.shape == pred.shape, f"frame {obs.shape} vs prediction {pred.shape}"
    err = np.abs(obs - pred).mean(axis=2)  # (H, W)
    levels = np.clip(err * (ERROR_GAIN * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def _caption(panel: np.ndarray, text: str) -> np.ndarray:
    """Write a short caption into the panel's top-left corner (on a dark box, readable on any
    image)."""
    scale = max(0.3, min(0.5, panel.shape[1] / 320))
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    cv2.rectangle(panel, (0, 0), (tw + 6, th + base + 4), _STRIP_BG, thickness=-1)
    cv2.putText(panel, text, (3, th + 2), _FONT, scale, _TEXT, 1, cv2.LINE_AA)
    return panel


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "nan" if math.isnan(value) else f"{value:.3g}"


def caption_strip(width: int, text: str) -> np.ndarray:
    """A dark strip of `width` with one line of text (shrunk to fit, never clipped)."""
    scale = 0.45
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    if tw > width - 8:
        scale *= (width - 8) / tw
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    strip = np.empty((th + base + 10, width, 3), np.uint8)
    strip[:] = _STRIP_BG
    cv2.putText(strip, text, (4, th + 5), _FONT, scale, _TEXT, 1, cv2.LINE_AA)
    return strip


def text_strip(width: int, info: StepInfo) -> np.ndarray:
    """The strip under a step: step, KL, correction and flag state."""
    parts = [f"t={info.step}", f"KL={_fmt(info.kl)}", f"corr={_fmt(info.correction)}"]
    parts.append(f"flag: {info.flag_state}" if info.flag_state else "no flag")
    if info.label:
        parts.insert(0, info.label)
    return caption_strip(width, "  ".join(parts))


def panel_row(
    observation: np.ndarray,
    *,
    recon: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    panels: tuple[str, ...] = (),
    scale: int = 4,
) -> np.ndarray:
    """The observation and the requested panels side by side, each upscaled and captioned.

    `error` is the heat map of the posterior reconstruction's error when `recon` is given, else
    of the prior prediction's.
    """
    unknown = set(panels) - set(PANELS)
    assert not unknown, f"unknown panels {sorted(unknown)}"
    obs = as_uint8(observation)
    tiles = [("obs", obs)]
    for name in PANELS:
        if name not in panels:
            continue
        if name == "recon":
            assert recon is not None, "the recon panel needs a reconstruction"
            tiles.append(("posterior recon", as_uint8(recon)))
        elif name == "pred":
            assert pred is not None, "the pred panel needs a prediction"
            tiles.append(("prior pred", as_uint8(pred)))
        else:
            source = recon if recon is not None else pred
            assert source is not None, "the error panel needs a reconstruction or prediction"
            which = "recon" if recon is not None else "pred"
            tiles.append((f"|obs-{which}|", error_heatmap(obs, source)))
    shapes = {tile.shape for _, tile in tiles}
    assert len(shapes) == 1, f"panels of different shapes: {shapes}"
    return np.hstack([_caption(upscale(tile, scale), name) for name, tile in tiles])


def framed(row: np.ndarray, info: StepInfo, *, border: int = 4) -> np.ndarray:
    """A row of panels above its text strip, inside a border colored by the flag's review
    state (a neutral dark border when the step is inside no flag)."""
    image = np.vstack([row, text_strip(row.shape[1], info)])
    color = _STRIP_BG
    if info.flag_state:
        color = REVIEW_COLORS.get(info.flag_state, OTHER_REVIEW_COLOR)
    return cv2.copyMakeBorder(
        image, border, border, border, border, cv2.BORDER_CONSTANT, value=color
    )


def step_frame(
    observation: np.ndarray,
    info: StepInfo,
    *,
    recon: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    panels: tuple[str, ...] = (),
    scale: int = 4,
) -> np.ndarray:
    """One step: observation + requested panels + text strip + review-state border."""
    row = panel_row(observation, recon=recon, pred=pred, panels=panels, scale=scale)
    return framed(row, info, border=max(2, scale))


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of possibly different widths stacked vertically (narrow ones padded right)."""
    width = max(r.shape[1] for r in rows)
    padded = [
        cv2.copyMakeBorder(r, 0, 0, 0, width - r.shape[1], cv2.BORDER_CONSTANT, value=_STRIP_BG)
        for r in rows
    ]
    return np.vstack(padded)


def mark_point(image: np.ndarray, xy: tuple[float, float], label: str = "") -> np.ndarray:
    """Mark a pixel position (x right, y down) with a crosshair ring: the true position of an
    object in a ground-truth render. Points outside the image are drawn clamped to its edge."""
    h, w = image.shape[:2]
    x = int(round(min(max(xy[0], 0), w - 1)))
    y = int(round(min(max(xy[1], 0), h - 1)))
    r = max(4, min(h, w) // 24)
    out = image.copy()
    for color, thick in (((0, 0, 0), 3), ((80, 255, 80), 1)):
        cv2.circle(out, (x, y), r, color, thick, cv2.LINE_AA)
        cv2.line(out, (x - 2 * r, y), (x - r, y), color, thick, cv2.LINE_AA)
        cv2.line(out, (x + r, y), (x + 2 * r, y), color, thick, cv2.LINE_AA)
        cv2.line(out, (x, y - 2 * r), (x, y - r), color, thick, cv2.LINE_AA)
        cv2.line(out, (x, y + r), (x, y + 2 * r), color, thick, cv2.LINE_AA)
    if label:
        cv2.putText(
            out,
            label,
            (min(x + r + 2, w - 40), max(y - r, 12)),
            _FONT,
            0.4,
            (80, 255, 80),
            1,
            cv2.LINE_AA,
        )
    return out


def strip(
    observations: np.ndarray,
    *,
    recon: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    panels: tuple[str, ...] = STRIP_PANELS,
) -> np.ndarray:
    """Steps as rows and panels as columns at the frames' own size, no captions: (N, H, W, C)
    frames -> (N*H, P*W, 3). The player cuts one cell per panel and scales it up in the
    browser, so a window of steps costs one request and scrubbing inside it costs none."""
    assert observations.ndim == 4, observations.shape
    unknown = set(panels) - set(STRIP_PANELS)
    assert panels and not unknown, f"strip panels must be some of {STRIP_PANELS}, got {panels}"
    obs = as_uint8(observations)
    columns = []
    for name in panels:
        if name == "obs":
            columns.append(obs)
        elif name == "error":
            source = recon if recon is not None else pred
            assert source is not None, "the error panel needs a reconstruction or prediction"
            pairs = zip(obs, source, strict=True)
            columns.append(np.stack([error_heatmap(o, decoded) for o, decoded in pairs]))
        else:
            decoded = recon if name == "recon" else pred
            assert decoded is not None, f"the {name} panel needs its decode"
            columns.append(as_uint8(decoded))
    row = np.concatenate(columns, axis=2)  # (N, H, P*W, 3): panels side by side
    return row.reshape(-1, *row.shape[2:])  # steps stacked top to bottom


def mark_belief(
    image: np.ndarray,
    belief: tuple[float, float] | None,
    futures: np.ndarray | None = None,
    spread: np.ndarray | None = None,
) -> np.ndarray:
    """Draw where the model believes the box is (a magenta X at `belief`, pixels) and its
    imagined futures: the mean path (H, 2) in cyan with a ring of radius `spread` (H,)
    pixels at each horizon. Non-finite points (past the episode's end) are skipped."""
    out = image.copy()
    h, w = out.shape[:2]
    size = max(4, min(h, w) // 32)
    if futures is not None and spread is not None:
        points = [
            (int(round(x)), int(round(y)), float(r))
            for (x, y), r in zip(futures, spread, strict=True)
            if np.isfinite(x) and np.isfinite(y) and np.isfinite(r)
        ]
        for x, y, r in points:
            cv2.circle(out, (x, y), max(1, int(round(r))), FUTURES_COLOR, 1, cv2.LINE_AA)
        path = np.array([(x, y) for x, y, _ in points], np.int32)
        if belief is not None and all(np.isfinite(belief)):
            path = np.vstack([np.array([belief], np.float64).round().astype(np.int32), path])
        if len(path) > 1:
            cv2.polylines(out, [path.reshape(-1, 1, 2)], False, FUTURES_COLOR, 2, cv2.LINE_AA)
    if belief is not None and all(np.isfinite(belief)):
        x, y = int(round(belief[0])), int(round(belief[1]))
        for color, thick in (((0, 0, 0), 4), (BELIEF_COLOR, 2)):
            cv2.line(out, (x - size, y - size), (x + size, y + size), color, thick, cv2.LINE_AA)
            cv2.line(out, (x - size, y + size), (x + size, y - size), color, thick, cv2.LINE_AA)
    return out


def encode(image: np.ndarray, fmt: ImageFormat = "jpeg", *, quality: int = 90) -> bytes:
    """RGB uint8 -> JPEG or PNG bytes."""
    bgr = cv2.cvtColor(as_uint8(image), cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok, f"OpenCV could not encode a {image.shape} frame as {fmt}"
    return buf.tobytes()


MEDIA_TYPES: dict[str, str] = {"jpeg": "image/jpeg", "png": "image/png"}
