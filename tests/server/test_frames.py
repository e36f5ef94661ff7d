"""OpenCV overlays: real encodes decoded back and checked pixel by pixel."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from server import frames
from server.frames import StepInfo


def _obs(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def _decode(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_upscale_is_nearest_blocks() -> None:
    obs = _obs()
    big = frames.upscale(obs, 4)
    assert big.shape == (256, 256, 3)
    assert np.array_equal(big[::4, ::4], obs)
    assert np.array_equal(big[3::4, 3::4], obs)


def test_png_round_trip_is_lossless_and_panels_sit_side_by_side() -> None:
    obs, recon = _obs(0), _obs(1)
    image = frames.step_frame(
        obs, StepInfo(step=3, kl=1.5), recon=recon, panels=("recon",), scale=2
    )
    decoded = _decode(frames.encode(image, "png"))
    assert np.array_equal(decoded, image)
    border = 2
    # observation then recon, each 128 wide, below the caption box (bottom-right quadrant)
    assert np.array_equal(
        decoded[border + 64 : border + 128, border + 64 : border + 128],
        frames.upscale(obs, 2)[64:, 64:],
    )
    assert np.array_equal(
        decoded[border + 64 : border + 128, border + 192 : border + 256],
        frames.upscale(recon, 2)[64:, 64:],
    )


def test_error_heatmap_is_zero_color_for_perfect_prediction_and_bright_for_wrong() -> None:
    obs = _obs()
    same = frames.error_heatmap(obs, obs)
    zero = cv2.cvtColor(
        cv2.applyColorMap(np.zeros((1, 1), np.uint8), cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB
    )[0, 0]
    assert (same == zero).all()
    wrong = frames.error_heatmap(obs, 255 - obs)
    assert wrong.astype(int).sum() > same.astype(int).sum() * 3


def test_float_decodes_are_clipped_and_scaled() -> None:
    decode = np.full((64, 64, 3), 1.7, np.float32)
    decode[0, 0] = -0.3
    decode[1, 1] = np.nan
    out = frames.as_uint8(decode)
    assert out.dtype == np.uint8 and out[5, 5, 0] == 255 and out[0, 0, 0] == 0 and out[1, 1, 0] == 0


@pytest.mark.parametrize("state", ["confirmed", "dismissed", "open"])
def test_border_color_follows_review_state(state: str) -> None:
    image = frames.step_frame(_obs(), StepInfo(step=0, flag_state=state), scale=4)
    assert tuple(image[0, 0]) == frames.REVIEW_COLORS[state]
    assert tuple(image[-1, -1]) == frames.REVIEW_COLORS[state]
    plain = frames.step_frame(_obs(), StepInfo(step=0), scale=4)
    assert tuple(plain[0, 0]) not in frames.REVIEW_COLORS.values()


def test_text_strip_changes_with_content_and_fits_width() -> None:
    a = frames.text_strip(256, StepInfo(step=1, kl=0.1, correction=0.2))
    b = frames.text_strip(256, StepInfo(step=1, kl=9.9, correction=0.2, flag_state="open"))
    assert a.shape[1] == 256 and not np.array_equal(a, b)
    narrow = frames.text_strip(64, StepInfo(step=123456, kl=float("nan"), label="ckpt 7"))
    assert narrow.shape[1] == 64


def test_jpeg_is_a_jpeg_close_to_the_image() -> None:
    image = frames.step_frame(_obs(), StepInfo(step=0), scale=4)
    data = frames.encode(image, "jpeg")
    assert data[:3] == b"\xff\xd8\xff"
    assert np.abs(_decode(data).astype(int) - image.astype(int)).mean() < 20


def test_stack_rows_pads_and_mark_point_draws_inside() -> None:
    rows = [np.zeros((10, 30, 3), np.uint8), np.zeros((12, 50, 3), np.uint8)]
    assert frames.stack_rows(rows).shape == (22, 50, 3)
    canvas = np.zeros((100, 100, 3), np.uint8)
    marked = frames.mark_point(canvas, (50, 40))
    assert marked[40, 50 + max(4, 100 // 24)].any() and not canvas.any()
    assert frames.mark_point(canvas, (500, -20)).any()  # clamped, still visible


def test_strip_stacks_steps_and_puts_panels_side_by_side() -> None:
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 255, (3, 8, 6, 3), dtype=np.uint8)
    recon = rng.random((3, 8, 6, 3), dtype=np.float32)
    image = frames.strip(obs, recon=recon, panels=("obs", "recon", "error"))
    assert image.shape == (3 * 8, 3 * 6, 3)
    assert np.array_equal(image[8:16, :6], obs[1])
    assert np.array_equal(image[16:, 6:12], frames.as_uint8(recon[2]))
    assert np.array_equal(image[:8, 12:], frames.error_heatmap(obs[0], recon[0]))


def test_mark_belief_draws_the_belief_and_skips_unknown_futures() -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    futures = np.array([[30.0, 30.0], [np.nan, np.nan]])
    drawn = frames.mark_belief(image, (20.0, 20.0), futures, np.array([5.0, np.nan]))
    assert np.all(drawn == frames.BELIEF_COLOR, axis=-1).any()
    assert np.all(drawn == frames.FUTURES_COLOR, axis=-1).any()
    assert not image.any()  # the input is not drawn on
    alone = frames.mark_belief(image, (20.0, 20.0))
    assert not np.all(alone == frames.FUTURES_COLOR, axis=-1).any()
