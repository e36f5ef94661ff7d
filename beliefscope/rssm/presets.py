"""Size presets of the native RSSM: one CPU-sized model and DreamerV3's published sizes.

A preset fixes the architecture and the loss/optimiser constants; the data fixes the rest
(action size and image shape). Checkpoints store every field, so a preset edited later never
changes how an old checkpoint is rebuilt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from beliefscope.errors import BadInputError


@dataclass(frozen=True)
class Preset:
    """Hyperparameters of one native world model."""

    name: str = "tiny"
    """Preset name, recorded in checkpoints for humans; the sizes below are what count."""
    depth: int = 16
    """CNN channels of the first encoder stage (doubled at every stage, as in DreamerV3)."""
    deter: int = 256
    """Units of the deterministic memory h_t (the LayerNorm GRU)."""
    hidden: int = 256
    """Units of the layers around the GRU (input, prior and posterior layers)."""
    groups: int = 16
    """Categorical latent groups (DreamerV3's `stoch`)."""
    classes: int = 16
    """Classes per latent group."""
    units: int = 256
    """Units of the reward and continuation heads' hidden layers."""
    head_layers: int = 1
    """Hidden layers of the reward and continuation heads."""
    unimix: float = 0.01
    """Uniform mix of the categorical latents, so no class probability reaches zero."""
    bins: int = 255
    """Two-hot bins of the reward head, evenly spaced in symlog space."""
    bin_range: float = 20.0
    """The bins span [-bin_range, bin_range] in symlog space."""
    free_nats: float = 1.0
    """KL terms below this many nats are not optimised (free bits)."""
    dyn_scale: float = 0.5
    """Weight of KL(sg(post) || prior): trains the dynamics towards the posterior."""
    rep_scale: float = 0.1
    """Weight of KL(post || sg(prior)): keeps the representation predictable."""
    lr: float = 3e-4
    """Adam learning rate."""
    grad_clip: float = 1000.0
    """Global gradient-norm clip."""


def _dreamer(name: str, deter: int, hidden: int, classes: int, depth: int) -> Preset:
    """DreamerV3's `sizeXm` rows: 32 latent groups, heads as wide as the hidden layers."""
    return Preset(
        name=name,
        depth=depth,
        deter=deter,
        hidden=hidden,
        groups=32,
        classes=classes,
        units=hidden,
        lr=1e-4,  # the paper's world-model learning rate (Adam)
    )


PRESETS: dict[str, Preset] = {
    # Trains in minutes on 2 CPU cores (the occlusion-world prototype's sizes, ~3 M params).
    "tiny": Preset(),
    # A quarter of tiny's width: the demo trains it live, so new checkpoints arrive in minutes.
    "mini": Preset(name="mini", depth=8, deter=128, hidden=128, groups=8, classes=8, units=128),
    "small": Preset(
        name="small", depth=24, deter=512, hidden=384, groups=32, classes=16, units=384
    ),
    "size12m": _dreamer("size12m", 2048, 256, 16, 16),
    "size25m": _dreamer("size25m", 3072, 384, 24, 24),
    "size50m": _dreamer("size50m", 4096, 512, 32, 32),
    "size100m": _dreamer("size100m", 6144, 768, 48, 48),
    "size200m": _dreamer("size200m", 8192, 1024, 64, 64),
    "size400m": _dreamer("size400m", 12288, 1536, 96, 96),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise BadInputError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


def preset_from_dict(values: dict) -> Preset:
    """Rebuild a preset from a checkpoint's config; unknown or mistyped fields are errors."""
    defaults = asdict(Preset())
    unknown = set(values) - set(defaults)
    if unknown:
        raise BadInputError(f"unknown model config fields {sorted(unknown)}")
    clean: dict[str, Any] = {}
    for key, value in values.items():
        kind = type(defaults[key])
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (
            number if kind is float else isinstance(value, kind) and not isinstance(value, bool)
        ):
            raise BadInputError(
                f"model config field {key!r} must be {kind.__name__}, got {value!r}"
            )
        clean[key] = float(value) if kind is float else value
    return replace(Preset(), **clean)
