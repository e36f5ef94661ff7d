"""The latent distributions against torch.distributions, unimix, straight-through, correction."""

from __future__ import annotations

import pytest
import torch
from torch import distributions as td

from beliefscope.rssm.dist import Categorical, Gaussian, correction


def _torch_categorical(logits: torch.Tensor, unimix: float) -> td.Distribution:
    probs = (1 - unimix) * torch.softmax(logits, -1) + unimix / logits.shape[-1]
    return td.Independent(td.Categorical(probs=probs), 1)  # groups summed


@pytest.mark.parametrize("unimix", [0.0, 0.01, 0.3])
def test_categorical_kl_and_entropy_match_torch(unimix: float) -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(5, 7, 4, 6, generator=gen) * 3 for _ in range(2))  # (B, T, G, K)
    ours_a, ours_b = Categorical(a, unimix), Categorical(b, unimix)
    ref_a, ref_b = _torch_categorical(a, unimix), _torch_categorical(b, unimix)
    torch.testing.assert_close(ours_a.kl(ours_b), td.kl_divergence(ref_a, ref_b))
    torch.testing.assert_close(ours_a.entropy(), ref_a.entropy())
    per_group = td.kl_divergence(
        td.Categorical(probs=ours_a.probs), td.Categorical(probs=ours_b.probs)
    )
    torch.testing.assert_close(ours_a.kl_groups(ours_b), per_group)
    assert ours_a.kl(ours_b).shape == (5, 7)


def test_unimix_floors_every_class_and_keeps_a_distribution() -> None:
    logits = torch.tensor([[[50.0, 0.0, -50.0, 0.0]]])  # (1, G=1, K=4), nearly one-hot
    probs = Categorical(logits, 0.01).probs[0, 0]
    soft = torch.softmax(logits, -1)[0, 0]
    torch.testing.assert_close(probs, 0.99 * soft + 0.0025)
    assert float(probs.min()) >= 0.0025 - 1e-7
    assert float(probs.sum()) == pytest.approx(1.0)
    # Without the mix, a confident prior makes the KL blow up; with it, KL is bounded by log(K/u).
    far = Categorical(torch.tensor([[[-50.0, 0.0, 50.0, 0.0]]]), 0.01)
    assert float(Categorical(logits, 0.01).kl(far)) < torch.log(torch.tensor(4 / 0.01)).item()


def test_gaussian_kl_and_entropy_match_torch() -> None:
    gen = torch.Generator().manual_seed(1)
    m1, m2 = torch.randn(3, 5, 8, generator=gen), torch.randn(3, 5, 8, generator=gen)
    s1, s2 = torch.rand(3, 5, 8, generator=gen) + 0.1, torch.rand(3, 5, 8, generator=gen) + 0.1
    ref1 = td.Independent(td.Normal(m1, s1), 1)
    ref2 = td.Independent(td.Normal(m2, s2), 1)
    torch.testing.assert_close(Gaussian(m1, s1).kl(Gaussian(m2, s2)), td.kl_divergence(ref1, ref2))
    torch.testing.assert_close(Gaussian(m1, s1).entropy(), ref1.entropy())


@pytest.mark.parametrize("how", ["sample", "mode"])
def test_straight_through_is_one_hot_forward_and_passes_gradients(how: str) -> None:
    logits = torch.randn(6, 3, 5, requires_grad=True)
    dist = Categorical(logits, 0.01)
    hot = dist.sample(torch.Generator().manual_seed(0)) if how == "sample" else dist.mode()
    assert torch.equal(hot.detach().sum(-1), torch.ones(6, 3))
    assert set(hot.detach().unique().tolist()) == {0.0, 1.0}
    weights = torch.randn(6, 3, 5)
    (hot * weights).sum().backward()
    # d(hot)/d(logits) is the Jacobian of the mixed probabilities: 0.99 * softmax Jacobian.
    probs = torch.softmax(logits.detach(), -1)
    expected = 0.99 * probs * (weights - (probs * weights).sum(-1, keepdim=True))
    assert logits.grad is not None
    torch.testing.assert_close(logits.grad, expected)


def test_sampling_follows_the_mixed_probabilities() -> None:
    logits = torch.tensor([[[2.0, 0.0, -1.0]]]).expand(20000, 1, 3)
    dist = Categorical(logits, 0.01)
    freq = dist.sample(torch.Generator().manual_seed(3)).mean(0)[0]
    torch.testing.assert_close(freq, dist.probs[0, 0], atol=0.015, rtol=0)


def test_posterior_correction_probe_for_gaussian_latents() -> None:
    """The design notes' probe: a gain-0.35 correction towards the observation."""
    prior_mean = torch.tensor([0.45, -0.10, 0.30])
    observation = torch.tensor([0.62, -0.06, 0.28])
    gain = 0.35
    post_mean = prior_mean + gain * (observation - prior_mean)
    torch.testing.assert_close(post_mean, torch.tensor([0.509, -0.086, 0.293]), atol=1e-3, rtol=0)
    std = torch.full((3,), 0.2)
    value = correction(Gaussian(post_mean, std), Gaussian(prior_mean, std))
    assert value.shape == ()
    assert float(value) == pytest.approx(0.08, abs=1e-3)  # the notes' figure, to their digits
    assert float(value) == pytest.approx(0.35 * (0.17 + 0.04 + 0.02))
