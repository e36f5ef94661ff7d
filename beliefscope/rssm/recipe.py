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
        checks = [
            (0.0 <= self.dropout <= 1.0, f"--dropout must be in [0, 1], got {self.dropout}"),
            (1 <= lo <= hi, f"--dropout-len must be A-B with 1 <= A <= B, got {lo}-{hi}"),
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
        values["dropout_len"] = list(self.dropout_len)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise BadInputError(f"unknown training recipe fields {sorted(unknown)}")
        clean = dict(values)
        if "dropout_len" in clean:
            clean["dropout_len"] = tuple(int(v) for v in clean["dropout_len"])
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
        length = int(min(lengths[b], steps - 1))
        if length < 1:
            continue
        start = 1 + int(draws[b] * (steps - length))  # uniform in [1, steps - length]
        observed[b, start : start + length] = False
    return observed | is_first
