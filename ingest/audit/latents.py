"""What the latent state carries: posterior collapse, dead and saturated groups, no memory.

The collapse and no-memory verdicts fold in the chronic findings of `beliefscope.review`
(computed on the audited steps' correction, with the same parameters as the Runs page).
"""

from __future__ import annotations

import numpy as np
import torch

from beliefscope.review import diagnostics
from beliefscope.rssm.core import observe
from beliefscope.rssm.dist import Categorical, correction
from beliefscope.values.audit import Check
from ingest.audit.filtered import DECODER_SKILL, RECORDED, Filtered, kl_of, sentence
from ingest.compute import kl_terms
from ingest.probes import ablate_memory

FLOOR_SHARE = 0.95
"""Share of steps with the KL at the free-nats floor that makes a collapse."""
MIN_DRIFT = 0.1
"""Withholding every frame must raise the reconstruction error by this fraction, else the
frames add nothing the actions did not already say."""
DEAD_KL = 0.01
"""A group whose mean KL is below this (nats) and whose posterior never changes is dead."""
STILL = 0.99
"""... never changes: its posterior keeps one class (or one mean) on this share of steps."""
ONE_HOT = 0.95
"""A categorical group is one-hot at a step when its top class has this probability."""
WARN_SHARE, FAIL_SHARE = 0.25, 0.75
"""Shares of dead groups that warn and fail."""
MEMORY_RATIO = 0.5
"""KL / the memory-ablated control's KL at or above which the dynamics carry little memory."""


def _chronic(f: Filtered) -> list[diagnostics.Finding]:
    """The Runs page's chronic findings on the audited steps (none for Gaussian latents,
    whose correction has no fixed scale)."""
    spec = f.model.spec
    scale = diagnostics.correction_scale({"groups": spec.groups, "classes": spec.classes})
    if scale is None:
        return []
    values = correction(f.traj.post, f.traj.prior).float().cpu().numpy()
    parts = [values[r][f.valid[r]] for r in range(len(f.episodes))]
    offsets = np.concatenate(([0], np.cumsum([len(p) for p in parts]))).astype(np.int64)
    col = diagnostics.CheckpointColumn(
        0, spec.config.get("step"), np.concatenate(parts), offsets, scale
    )
    return diagnostics.checkpoint_findings(col)


def posterior_collapse(f: Filtered) -> Check:
    """Steps whose KL sits at the free-nats floor (no gradient reaches the posterior), and how
    much the frames matter at all: reconstruction with every frame withheld vs filtered."""
    post, prior = f.traj.post, f.traj.prior
    _, kl_dyn, _ = kl_terms(f.model, post, prior)
    _, floor, _ = kl_terms(f.model, prior, prior)  # the floored term where the KL is zero
    at_floor = (kl_dyn <= floor + 1e-6).cpu().numpy()
    steps = f.valid & (f.since_first > 0)
    share = float(at_floor[steps].mean()) if steps.any() else float("nan")
    numbers: dict = {
        "floor_share": share,
        "free_nats": f.model.spec.free_nats,
        "median_kl": float(np.median(f.kl.float().cpu().numpy()[steps])),
    }
    drift, drift_text = None, "not measured (no decoder)"
    skill = f.decoder_skill()
    if skill < DECODER_SKILL:  # NaN (no decoder) compares False
        drift_text = f"not measured (the decoder explains only {max(skill, 0.0):.0%} of the frames)"
    elif "decode" in f.heads:
        valid = f.sample_valid()
        filtered = float(f.recon_error(None, RECORDED)[valid].mean())
        withheld = float(f.recon_error(None, RECORDED, withheld=True)[valid].mean())
        drift = withheld / max(filtered, 1e-12) - 1.0
        numbers.update(recon_error=filtered, withheld_error=withheld, dropout_drift=drift)
        drift_text = f"{drift:+.0%}"
    collapse = next((c for c in _chronic(f) if c.kind == "collapse"), None)
    if collapse is not None:
        numbers["correction_near_zero_share"] = collapse.evidence["share_near_zero"]
    spec_free = f.model.spec.free_nats
    floored = share >= FLOOR_SHARE
    ignored = drift is not None and drift < MIN_DRIFT
    rule = (
        f"fail when {FLOOR_SHARE:.0%} of steps sit at the free-nats floor and withholding every "
        f"frame raises the reconstruction error by less than {MIN_DRIFT:.0%}; warn on either"
    )
    withheld_text = f"reconstruction error with every frame withheld: {drift_text}"
    floor_text = f"the KL sits at the free-nats floor ({spec_free:g}) on {share:.0%} of steps"
    if floored and ignored:
        status = "fail"
        finding = (
            f"{sentence(floor_text)} and the {withheld_text}: the posterior has collapsed "
            "onto the prior and the encoder is ignored."
        )
    elif floored or ignored or collapse is not None:
        status = "warn"
        also = f"; {collapse.summary}" if collapse is not None else ""
        finding = (
            f"{sentence(floor_text)}; {withheld_text}{also}: the frames add little the "
            "prior does not already say; check the KL scales and free nats."
        )
    else:
        status = "pass"
        finding = f"{sentence(floor_text)}; {withheld_text}: the posterior uses the frames."
    corruption = "posterior collapse (encoder ignored)" if status == "fail" else None
    return Check("posterior_collapse", status, finding, corruption, rule, numbers)  # type: ignore[arg-type]


def latent_groups(f: Filtered) -> Check:
    """Per-group KL and posterior over the sample: groups that never move (dead), groups whose
    posterior is one-hot at every step (saturated: deterministic, fine unless also dead)."""
    steps = torch.from_numpy(f.valid & (f.since_first > 0))
    post = f.traj.post
    kl = f.traj.post.kl_groups(f.traj.prior)[steps].float().mean(0).cpu().numpy()  # (G,)
    if isinstance(post, Categorical):
        probs = post.probs[steps]  # (N, G, K)
        mode = probs.argmax(-1)  # (N, G)
        common = mode.mode(0).values  # (G,)
        still = (mode == common).float().mean(0).cpu().numpy()
        one_hot = (probs.max(-1).values >= ONE_HOT).float().mean(0).cpu().numpy()
        saturated = one_hot >= STILL
    else:
        mean = post.expectation()[steps]  # (N, Z)
        spread = mean.std(0) / post.expectation().std().clamp(min=1e-12)
        still = (spread < 1e-3).float().cpu().numpy()
        saturated = np.zeros(len(kl), bool)
    dead = (kl < DEAD_KL) & (still >= STILL)
    groups = len(kl)
    share = float(dead.mean())
    numbers = {
        "groups": groups,
        "dead": np.flatnonzero(dead).tolist(),
        "saturated": np.flatnonzero(saturated & ~dead).tolist(),
        "kl_by_group": kl.tolist(),
        "still_share_by_group": np.asarray(still).tolist(),
    }
    rule = (
        f"dead: mean KL < {DEAD_KL} nats and the posterior unchanged on {STILL:.0%} of steps; warn "
        f"at {WARN_SHARE:.0%} of groups dead, fail at {FAIL_SHARE:.0%}"
    )
    n_sat = int((saturated & ~dead).sum())
    sat = f"{n_sat} always one-hot (deterministic)" if isinstance(post, Categorical) else ""
    counts = f"{int(dead.sum())} of {groups} groups dead" + (f", {sat}" if sat else "")
    if share >= FAIL_SHARE:
        return Check(
            "latent_groups",
            "fail",
            f"{counts}: the latent state carries almost nothing; the model lives on its "
            "deterministic memory alone (look for a KL scale or free nats that make the latent "
            "too expensive).",
            "dead latent groups",
            rule,
            numbers,
        )
    if share >= WARN_SHARE:
        return Check(
            "latent_groups",
            "warn",
            f"{counts}: a quarter or more of the latent is unused capacity.",
            None,
            rule,
            numbers,
        )
    return Check(
        "latent_groups",
        "pass",
        f"{counts}: the latent groups are in use (mean KL per group "
        f"{kl.min():.2f}..{kl.max():.2f} nats).",
        rule=rule,
        numbers=numbers,
    )


def no_memory(f: Filtered) -> Check:
    """The Runs page's chronic no-memory finding (correction large for long stretches) on the
    audited steps, judged against a control: the same model with its dynamics' memory ablated
    (`ingest.probes.ablate_memory`). Dynamics that carry the belief explain the frames with far
    less KL than the control; dynamics without memory do no better."""
    params = diagnostics.DiagnosticParams()
    rule = (
        f"fail when the KL is at least {MEMORY_RATIO:g}x a memory-ablated control's and the "
        f"correction exceeds {params.large:g} x its scale for {params.stretch}+ steps on "
        f"{params.stretch_share:.0%} of steps (the Runs page's finding); warn on the first alone"
    )
    steps = f.valid & (f.since_first > 0)
    ablated = ablate_memory(f.model)
    control = observe(ablated.cell, f.embed, f.batch.action, f.batch.is_first)
    own = float(f.kl.float().cpu().numpy()[steps].mean())
    forgetful = float(
        kl_of(f.model, control.post, control.prior).float().cpu().numpy()[steps].mean()
    )
    ratio = own / max(forgetful, 1e-12)
    found = next((c for c in _chronic(f) if c.kind == "no_memory"), None)
    numbers: dict = {"mean_kl": own, "memoryless_kl": forgetful, "kl_ratio": ratio}
    where: tuple = ()
    chronic = ""
    if found is not None:
        numbers.update(
            chronic_share=found.evidence["share_in_stretches"],
            chronic_level=found.evidence["large_level"],
        )
        # a trace of the column is one audited row, its steps counted from the row's start
        where = tuple(
            f.where(trace, t0, "correction stays large", t_end=t1)
            for trace, t0, t1 in found.examples
        )
        chronic = (
            f"The correction stays above {found.evidence['large_level']:.1f} for "
            f"{params.stretch}+ steps on {found.evidence['share_in_stretches']:.0%} of steps (the "
            "Runs page's no-memory finding)"
        )
    skill = f.decoder_skill()
    if ratio >= MEMORY_RATIO and skill < DECODER_SKILL:
        return Check(
            "no_memory",
            "inconclusive",
            f"The KL is {ratio:.2f}x a memory-ablated control's, but the decoder explains only "
            f"{max(skill, 0.0):.0%} of the frames: the model is too untrained to tell a lack of "
            "memory from a lack of training.",
            rule=rule,
            numbers=numbers,
            where=where,
        )
    if ratio >= MEMORY_RATIO:
        return Check(
            "no_memory",
            "fail" if found is not None else "warn",
            (f"{chronic}, and " if chronic else "")
            + f"the model's KL is {ratio:.2f}x that of the same model with its memory ablated "
            f"({own:.2f} vs {forgetful:.2f} nats): the dynamics carry little of the belief from "
            "one frame to the next; open the longest stretches and compare the prior's "
            "prediction with the frame.",
            "no memory in the dynamics" if found is not None else None,
            rule,
            numbers,
            where,
        )
    remember = (
        f"carrying the belief cuts the KL to {ratio:.0%} of a memory-ablated control's ({own:.2f} "
        f"vs {forgetful:.2f} nats): the dynamics remember"
    )
    return Check(
        "no_memory",
        "pass",
        (
            f"{chronic}, but {remember}; those stretches are loose predictions, not lost memory."
            if chronic
            else remember[0].upper() + remember[1:] + "."
        ),
        rule=rule,
        numbers=numbers,
        where=where,
    )
