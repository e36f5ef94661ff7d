"""Training levers beyond DreamerV3's recipe, for models that must remember what they can't see.

DreamerV3 decodes images from the posterior, which always sees the current frame, so its
image loss never asks the dynamics to carry anything: only KL_dyn at the few steps where a
hidden object comes back does. On the occlusion world that leaves a model whose belief of the
hidden box fades within a few steps (docs/memory.md has the measurements). Each lever below
makes memory pay off on many more steps; all are off by default, which is DreamerV3's recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from beliefscope.errors import BadInputError


@dataclass(frozen=True)
class Recipe:
    """Loss and data options of `beliefscope train` that are not part of the architecture."""

    dropout: float = 0.0
    """Fraction of training windows that withhold one block of frames: there the posterior is
    the prior (the model advances on its dynamics alone) and the decoder must still draw the
    withheld frames, so whatever was visible before the block must be remembered."""
    dropout_len: tuple[int, int] = (3, 10)
    """Length range (inclusive) of the withheld block, in steps."""
    occlude: float = 0.0
    """Fraction of training windows in which a grey rectangle hides part of the encoder's
    view for a block of steps, while the decoder must still draw the clean frames: whatever
    was behind it must be carried by the belief, exactly as behind a real occluder (the
    posterior still sees the rest of the frame)."""
    occlude_len: tuple[int, int] = (3, 10)
    """Length range (inclusive) of the occluded block, in steps."""
    occlude_size: tuple[float, float] = (0.25, 0.5)
    """Side range of the rectangle, as fractions of the frame's height and width."""
    overshoot: int = 0
    """Latent overshooting horizon K (0: off): from random posterior states, imagine K steps
    with the recorded actions and decode every imagined step against the true frames."""
    overshoot_starts: int = 2
    """Start states per window for overshooting."""
    overshoot_scale: float = 1.0
    """Weight of the overshooting image loss relative to the reconstruction loss."""
    reward_scale: float = 1.0
    """Weight of the reward head's loss. Where the reward depends on a hidden object (the
    occlusion world pays -distance(box, goal)), predicting it asks for memory at every hidden
    step."""

    def __post_init__(self) -> None:
        lo, hi = self.dropout_len
        o_lo, o_hi = self.occlude_len
        s_lo, s_hi = self.occlude_size
        checks = [
            (0.0 <= self.dropout <= 1.0, f"--dropout must be in [0, 1], got {self.dropout}"),
            (1 <= lo <= hi, f"--dropout-len must be A-B with 1 <= A <= B, got {lo}-{hi}"),
            (0.0 <= self.occlude <= 1.0, f"--occlude must be in [0, 1], got {self.occlude}"),
            (1 <= o_lo <= o_hi, f"--occlude-len must be A-B with 1 <= A <= B, got {o_lo}-{o_hi}"),
            (
                0.0 < s_lo <= s_hi <= 1.0,
                f"--occlude-size must be A-B with 0 < A <= B <= 1, got {s_lo}-{s_hi}",
            ),
            (self.overshoot >= 0, f"--overshoot must be >= 0, got {self.overshoot}"),
            (self.overshoot_starts >= 1, "--overshoot-starts must be at least 1"),
            (self.overshoot_scale >= 0, "--overshoot-scale must be >= 0"),
            (self.reward_scale >= 0, "--reward-scale must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInputError(message)

    @property
    def is_default(self) -> bool:
        return self == Recipe()

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for key in ("dropout_len", "occlude_len", "occlude_size"):
            values[key] = list(values[key])
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise BadInputError(f"unknown training recipe fields {sorted(unknown)}")
        clean = dict(values)
        for key in ("dropout_len", "occlude_len"):
            if key in clean:
                clean[key] = tuple(int(v) for v in clean[key])
        if "occlude_size" in clean:
            clean["occlude_size"] = tuple(float(v) for v in clean["occlude_size"])
        return cls(**clean)


def dropout_mask(
    rng: np.random.Generator, is_first: np.ndarray, recipe: Recipe
) -> np.ndarray | None:
    """(B, T) bool, False on withheld frames: one block in a `recipe.dropout` fraction of the
    windows, never on step 0 nor on a reset (a frame with no past has nothing to remember)."""
    assert is_first.ndim == 2, is_first.shape
    if recipe.dropout <= 0.0:
        return None
    batch, steps = is_first.shape
    observed = np.ones((batch, steps), bool)
    lo, hi = recipe.dropout_len
    chosen = rng.random(batch) < recipe.dropout
    lengths = np.asarray(rng.integers(lo, hi + 1, size=batch))
    draws = np.asarray(rng.random(batch))
    for b in np.flatnonzero(chosen):
        if steps < 2:
            continue
        start, end = _block(float(draws[b]), int(lengths[b]), steps)
        observed[b, start:end] = False
    return observed | is_first


GREY = 128
"""What a synthetic occluder shows: a flat mid-grey, unlike anything in the world."""


def _block(rng_draw: float, length: int, steps: int) -> tuple[int, int]:
    length = int(min(length, steps - 1))
    start = 1 + int(rng_draw * (steps - length))  # uniform in [1, steps - length]
    return start, start + length


def occlude_frames(
    rng: np.random.Generator, image: np.ndarray, is_first: np.ndarray, recipe: Recipe
) -> np.ndarray | None:
    """The encoder's view of (B, T, H, W, C) uint8 frames: in a `recipe.occlude` fraction of
    the windows, one rectangle painted grey over a block of steps (never on step 0 nor on a
    reset); None when the lever is off. The frames themselves stay the decoder's target."""
    assert image.ndim == 5 and is_first.shape == image.shape[:2], (image.shape, is_first.shape)
    if recipe.occlude <= 0.0:
        return None
    batch, steps, height, width, _ = image.shape
    seen = image.copy()
    lo, hi = recipe.occlude_len
    s_lo, s_hi = recipe.occlude_size
    chosen = rng.random(batch) < recipe.occlude
    lengths = np.asarray(rng.integers(lo, hi + 1, size=batch))
    draws = np.asarray(rng.random((batch, 5)))
    for b in np.flatnonzero(chosen):
        if steps < 2:
            continue
        t0, t1 = _block(draws[b, 0], int(lengths[b]), steps)
        h = max(1, round(height * (s_lo + draws[b, 1] * (s_hi - s_lo))))
        w = max(1, round(width * (s_lo + draws[b, 2] * (s_hi - s_lo))))
        y = int(draws[b, 3] * (height - h + 1))
        x = int(draws[b, 4] * (width - w + 1))
        rows = np.arange(t0, t1)[~is_first[b, t0:t1]]
        seen[b, rows, y : y + h, x : x + w] = GREY
    return seen
