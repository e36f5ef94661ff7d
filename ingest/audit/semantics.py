"""KL semantics: the checkpoint's free nats, dyn/rep scales and unimix against the values its
family's reference implementation uses, where the checkpoint's config records them (a value
the loader had to assume is the default by construction, so it proves nothing)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from beliefscope.rssm.core import WorldModel
from beliefscope.rssm.families import torchrl_v3
from beliefscope.rssm.presets import Preset
from beliefscope.values.audit import Check

_NATIVE = asdict(Preset())
REFERENCES: dict[str, tuple[str, dict[str, Any]]] = {
    "native": (
        "DreamerV3 (the native presets' defaults)",
        {k: _NATIVE[k] for k in ("free_nats", "dyn_scale", "rep_scale", "unimix")},
    ),
    "dreamerv3-torch": (
        "NM512/dreamerv3-torch's configs.yaml defaults",
        {"kl_free": 1.0, "dyn_scale": 0.5, "rep_scale": 0.1, "unimix_ratio": 0.01},
    ),
    "dreamerv3": (
        "danijar/dreamerv3's configs.yaml defaults",
        {
            "agent.dyn.rssm.free_nats": 1.0,
            "agent.loss_scales.dyn": 1.0,
            "agent.loss_scales.rep": 0.1,
            "agent.dyn.rssm.unimix": 0.01,
        },
    ),
    "torchrl": (
        "TorchRL's DreamerV3ModelLoss defaults",
        {"loss.kl_mode": torchrl_v3.KL_MODES[0]}
        | {f"loss.{k}": v for k, v in torchrl_v3.KL_DEFAULTS.items()},
    ),
}
"""Family -> (whose defaults, config key -> value)."""


def _used(model: WorldModel) -> dict[str, Any]:
    """The values the loaded model's KL uses, under its family's config keys."""
    spec = model.spec
    if spec.family == "torchrl":
        return {f"loss.{k}": v for k, v in spec.config.get("loss", {}).items()}
    keys = list(REFERENCES[spec.family][1])
    unimix = getattr(model.cell, "unimix", spec.config.get("unimix"))
    return dict(zip(keys, (spec.free_nats, spec.dyn_scale, spec.rep_scale, unimix), strict=True))


def _aggregation(model: WorldModel) -> str:
    if model.spec.config.get("free_bits_per") == "categorical":
        return "free bits per categorical, then summed (TorchRL's balanced mode)"
    return "free nats on the KL summed over latent groups (DreamerV3)"


def kl_semantics(model: WorldModel) -> Check:
    family = model.spec.family
    rule = (
        "warn when a recorded value differs from the family reference; inconclusive when none "
        "is recorded"
    )
    if family not in REFERENCES:
        return Check(
            "kl_semantics",
            "inconclusive",
            f"No reference KL settings are known for the {family!r} family.",
            rule=rule,
        )
    whose, reference = REFERENCES[family]
    used = {k: v for k, v in _used(model).items() if k in reference}
    assumed = {str(a).split("=", 1)[0] for a in model.spec.config.get("assumed", [])}
    recorded = {k: v for k, v in used.items() if k not in assumed}
    differ = {k: v for k, v in recorded.items() if not _same(v, reference[k])}
    numbers = {
        "reference": whose,
        "recorded": recorded,
        "assumed": sorted(k for k in used if k in assumed),
        "reference_values": {k: reference[k] for k in used},
        "aggregation": _aggregation(model),
    }
    if differ:
        shown = "; ".join(
            f"{k} = {v} where the reference uses {reference[k]}" for k, v in differ.items()
        )
        return Check(
            "kl_semantics",
            "warn",
            f"The checkpoint's KL differs from {whose}: {shown} (aggregation: "
            f"{numbers['aggregation']}); make sure that is intended before comparing its KL "
            "with other runs.",
            "KL settings differ from the reference: " + ", ".join(differ),
            rule,
            numbers,
        )
    if not recorded:
        return Check(
            "kl_semantics",
            "inconclusive",
            f"The checkpoint's config records none of {', '.join(used)}: the loader assumed "
            f"{whose}, so its KL semantics cannot be checked.",
            rule=rule,
            numbers=numbers,
        )
    shown = ", ".join(f"{k} {v}" for k, v in recorded.items())
    return Check(
        "kl_semantics",
        "pass",
        f"The recorded KL settings match {whose} ({shown}; {numbers['aggregation']}).",
        rule=rule,
        numbers=numbers,
    )


def _same(value: Any, reference: Any) -> bool:
    if isinstance(reference, str) or isinstance(value, str):
        return value == reference
    return abs(float(value) - float(reference)) <= 1e-9 * max(1.0, abs(float(reference)))
