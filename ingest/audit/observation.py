"""Observation convention: were the frames written the way the model was trained to see them?

The model reconstructs the frames as recorded and as each alternative convention would have
stored them (channels reversed, values in 0..1, values centred in -0.5..0.5 as signed bytes); a
clearly lower reconstruction error under an alternative means the replay was written in that
convention. Each alternative is the inverse of the mistake, applied to the stored bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from beliefscope.values.audit import Check
from ingest.audit.filtered import DECODER_SKILL, RECORDED, Filtered, skill
from ingest.audit.stats import Z, mean_se


def _reversed(image: Tensor) -> Tensor:
    return image.flip(-1)


def _from_unit(image: Tensor) -> Tensor:
    return (image.to(torch.int32) * 255).clamp(max=255).to(torch.uint8)


def _from_signed(image: Tensor) -> Tensor:
    return ((image.to(torch.int32) + 128) % 256).to(torch.uint8)


ALTERNATIVES: dict[str, tuple[Callable[[Tensor], Tensor], str]] = {
    "channels reversed": (_reversed, "frames with their channels reversed (BGR saved as RGB)"),
    "0..1 scale": (_from_unit, "frames written in 0..1 scale, not 0..255"),
    "-0.5..0.5 scale": (_from_signed, "frames written centred in -0.5..0.5 (as signed bytes)"),
}
"""Name -> (how to undo the mistake on the stored bytes, what the mistake was)."""
MAX_RATIO = 0.7
"""An alternative counts when its error is below this fraction of the recorded frames'."""


def observation_convention(f: Filtered) -> Check:
    rule = (
        f"fail when an alternative's reconstruction error is below {MAX_RATIO:g}x the recorded "
        f"frames' by more than {Z:g}x its noise; inconclusive when the decoder explains less "
        f"than {DECODER_SKILL:.0%} of the frames' variance about their mean grey level"
    )
    if "decode" not in f.heads:
        return Check(
            "observation_convention",
            "inconclusive",
            "The model has no decoder, so the frames' convention cannot be checked.",
            rule=rule,
        )
    rows, _ = f.sample_index()
    valid = f.sample_valid()
    image = f.sample_image()
    recorded = f.recon_error(None, RECORDED)
    errors = {RECORDED: recorded}
    skills = {RECORDED: skill(recorded, image, valid, flat=True)}
    channels = image.shape[-1]
    for name, (undo, _) in ALTERNATIVES.items():
        if name == "channels reversed" and channels < 2:
            continue
        errors[name] = f.recon_error(undo, name)
        skills[name] = skill(errors[name], undo(image), valid, flat=True)
    means = {name: float(err[valid].mean()) for name, err in errors.items()}
    top = int(image.max())
    numbers = {
        "conventions": list(errors),
        "recon_error": [means[n] for n in errors],
        "skill": [skills[n] for n in errors],
        "pixel_max": top,
        "frames": int(valid.sum()),
    }
    better = [
        name
        for name in errors
        if name != RECORDED
        and skills[name] >= DECODER_SKILL
        and means[name] < MAX_RATIO * means[RECORDED]
        and mean_se(recorded - errors[name], valid).exceeds()
    ]
    if top <= 1:
        better = ["0..1 scale"]
    if better:
        name = min(better, key=means.__getitem__)
        return Check(
            "observation_convention",
            "fail",
            f"The model reconstructs the frames {means[RECORDED] / max(means[name], 1e-12):.1f}x "
            f"better read as {name} (MSE {means[name]:.4f} vs {means[RECORDED]:.4f}; pixel "
            f"values reach {top}): the replay holds {ALTERNATIVES[name][1]}; fix the writer or "
            "convert the frames before training or ingest.",
            ALTERNATIVES[name][1],
            rule,
            {**numbers, "read_as": name},
            (f.where(int(rows[0]), 0, f"frames as recorded vs read as {name}"),),
        )
    if skills[RECORDED] < DECODER_SKILL:
        return Check(
            "observation_convention",
            "inconclusive",
            f"The decoder explains only {max(skills[RECORDED], 0.0):.0%} of the frames' variance "
            "(no better under any alternative convention), too little to judge how they were "
            "written.",
            rule=rule,
            numbers=numbers,
        )
    alt = ", ".join(f"{n} {means[n]:.4f}" for n in errors if n != RECORDED)
    return Check(
        "observation_convention",
        "pass",
        f"The frames as recorded reconstruct best (MSE {means[RECORDED]:.4f}; {alt}): they are "
        "in the convention the model was trained on.",
        rule=rule,
        numbers=numbers,
    )
