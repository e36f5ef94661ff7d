"""The native world model: resets, straight-through into the encoder, KL balancing, heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from beliefscope.rssm import core
from beliefscope.rssm.native import NativeWorldModel
from beliefscope.rssm.train import Stream
from tests.rssm.conftest import MICRO, square_world


def _model(seed: int = 0) -> NativeWorldModel:
    torch.manual_seed(seed)
    return NativeWorldModel(MICRO, action_dim=2, image_shape=(16, 16, 3))


def _batch(seed: int = 0, batch: int = 3, length: int = 10) -> dict[str, torch.Tensor]:
    stream = Stream.join(square_world(4, 12, seed=seed))
    return stream.sample(np.random.default_rng(seed), batch, length, torch.device("cpu"))


def test_reset_on_is_first_restarts_from_the_initial_state() -> None:
    model = _model()
    batch = _batch()
    is_first = batch["is_first"].clone()
    is_first[0, 4] = True
    with torch.no_grad():
        embed = model.encode(batch["image"])
        whole = model.observe(embed, batch["action"], is_first)
        # The same row filtered from step 4 alone, starting from `initial`.
        tail = model.observe(embed[:1, 4:], batch["action"][:1, 4:], is_first[:1, 4:])
    torch.testing.assert_close(whole.deter[:1, 4:], tail.deter)
    torch.testing.assert_close(whole.post.logits[:1, 4:], tail.post.logits)
    torch.testing.assert_close(whole.prior.logits[:1, 4:], tail.prior.logits)
    # Row 1 had no reset at step 4, so its history still matters there.
    assert not torch.allclose(whole.deter[1, 4], tail.deter[0, 0])


def test_reset_blends_exactly_the_initial_state_into_reset_rows() -> None:
    model = _model()
    state = {
        "deter": torch.randn(3, MICRO.deter),
        "stoch": torch.rand(3, MICRO.groups, MICRO.classes),
    }
    action = torch.randn(3, 2)
    is_first = torch.tensor([False, True, False])
    after, act = core.reset(model.cell, state, action, is_first)
    initial = model.initial(3)
    for key in ("deter", "stoch"):
        torch.testing.assert_close(after[key][1], initial[key][1])
        torch.testing.assert_close(after[key][[0, 2]], state[key][[0, 2]])
    assert torch.equal(act[1], torch.zeros(2)) and torch.equal(act[[0, 2]], action[[0, 2]])


def test_observe_returns_per_step_beliefs_and_imagine_continues_them() -> None:
    model = _model()
    batch = _batch(length=8)
    with torch.no_grad():
        traj = model.observe(model.encode(batch["image"]), batch["action"], batch["is_first"])
        dream = model.imagine(traj.state(4), batch["action"][:, 5:])
        again = model.imagine(traj.state(4), batch["action"][:, 5:])
    g, k, d = MICRO.groups, MICRO.classes, MICRO.deter
    assert traj.prior.logits.shape == traj.post.logits.shape == (3, 8, g, k)
    assert traj.deter.shape == (3, 8, d) and traj.stoch.shape == (3, 8, g, k)
    # The first imagined step is the same dynamics step the filter took at t = 5.
    torch.testing.assert_close(dream.deter[:, 0], traj.deter[:, 5])
    torch.testing.assert_close(dream.prior.logits[:, 0], traj.prior.logits[:, 5])
    torch.testing.assert_close(dream.deter, again.deter)  # "mode" rollouts are deterministic
    feat = model.feat(traj.deter, traj.stoch)
    assert model.decode(feat).shape == (3, 8, 16, 16, 3)
    assert model.reward(feat).shape == model.cont(feat).shape == (3, 8)


def test_straight_through_carries_the_image_loss_into_the_encoder() -> None:
    """The embedding reaches the decoder only through sampled one-hot latents."""
    model = _model()
    batch = _batch()
    traj = model.observe(
        model.encode(batch["image"]),
        batch["action"],
        batch["is_first"],
        posterior="sample",
        generator=torch.Generator().manual_seed(0),
    )
    assert set(traj.stoch.detach().unique().tolist()) <= {0.0, 1.0}
    model.decode(model.feat(traj.deter, traj.stoch)).square().mean().backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_loss_reports_raw_and_clipped_kl_with_dreamerv3_balancing() -> None:
    model = _model()
    batch = _batch()
    _, metrics = model.loss(batch, torch.Generator().manual_seed(0))
    assert metrics["kl_dyn"] >= max(metrics["kl"], MICRO.free_nats) - 1e-6
    assert metrics["kl_dyn"] == pytest.approx(metrics["kl_rep"])  # same values, different grads
    head = metrics["image"] + metrics["reward"] + metrics["cont"]
    expected = head + MICRO.dyn_scale * metrics["kl_dyn"] + MICRO.rep_scale * metrics["kl_rep"]
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
    # The reward head starts at exactly 0, so its two-hot CE is -log p(two bins) under uniform.
    assert metrics["reward"] == pytest.approx(np.log(MICRO.bins), rel=1e-4)


def test_kl_balancing_sends_dyn_to_the_prior_and_rep_to_the_posterior() -> None:
    """Free nats at 0, only one KL term weighted: the other side must get no gradient.

    One step only: over longer windows the posterior also reaches later priors through the
    straight-through latent it feeds forward, which is intended.
    """
    from dataclasses import replace

    for scales, trained, frozen in [((1.0, 0.0), "prior", "post"), ((0.0, 1.0), "post", "prior")]:
        preset = replace(MICRO, free_nats=0.0, dyn_scale=scales[0], rep_scale=scales[1])
        torch.manual_seed(0)
        model = NativeWorldModel(preset, 2, (16, 16, 3))
        batch = _batch(length=1)
        traj = model.observe(model.encode(batch["image"]), batch["action"], batch["is_first"])
        p = preset
        kl = p.dyn_scale * traj.post.detach().kl(traj.prior) + p.rep_scale * traj.post.kl(
            traj.prior.detach()
        )
        kl.mean().backward()

        def grad(name: str, model: NativeWorldModel = model) -> float:
            params = getattr(model.cell, name).parameters()
            return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)

        assert grad(trained) > 0 and grad(frozen) == 0
