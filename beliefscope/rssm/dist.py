"""Latent distributions of RSSMs, with every reduction over latents done in one place.

Every family in scope reports KL and entropy *summed over latent groups*, so these classes
do the same; `kl_groups` keeps the per-group terms for heat maps. `expectation` is what the
product's correction metric compares: class probabilities for categorical latents, means for
Gaussian ones (the L1 distance between posterior and prior expectations).
"""

from __future__ import annotations

from functools import cached_property
from typing import Protocol

import torch
from torch import Tensor


class LatentDist(Protocol):
    """A batch of per-step latent beliefs with batch shape `(...)`."""

    def kl_groups(self, other: LatentDist) -> Tensor: ...  # (..., G)
    def kl(self, other: LatentDist) -> Tensor: ...  # (...)
    def entropy(self) -> Tensor: ...  # (...)
    def expectation(self) -> Tensor: ...  # (..., G, K) or (..., Z)
    def mode(self) -> Tensor: ...
    def sample(self, generator: torch.Generator | None = None) -> Tensor: ...
    def detach(self) -> LatentDist: ...
    def where(self, mask: Tensor, other: LatentDist) -> LatentDist: ...


def correction(post: LatentDist, prior: LatentDist) -> Tensor:
    """L1 between posterior and prior expectations, summed over all latent units: (...)."""
    diff = (post.expectation() - prior.expectation()).abs()
    return diff.flatten(start_dim=diff.ndim - _event_ndim(post)).sum(-1)


def _event_ndim(dist: LatentDist) -> int:
    return 2 if isinstance(dist, Categorical) else 1


class Categorical:
    """`groups x classes` one-hot categoricals with DreamerV3's 1% uniform mix (unimix).

    `logits` are raw (as the networks output and as checkpoints/replays store them); the mix
    is applied here, exactly as `probs = (1 - u) softmax(logits) + u / K`. `probs` and
    `log_probs` are computed on first use: the filter builds two of these a step and needs
    only the posterior's mode there, the statistics come from the stacked sequence.
    """

    def __init__(self, logits: Tensor, unimix: float = 0.01) -> None:
        assert logits.ndim >= 2, logits.shape
        self.logits = logits
        self.unimix = unimix

    @cached_property
    def probs(self) -> Tensor:
        probs = torch.softmax(self.logits, -1)
        if self.unimix:
            probs = (1.0 - self.unimix) * probs + self.unimix / self.logits.shape[-1]
        return probs

    @cached_property
    def log_probs(self) -> Tensor:
        return torch.log(self.probs)

    def kl_groups(self, other: LatentDist) -> Tensor:
        assert isinstance(other, Categorical), type(other)
        return (self.probs * (self.log_probs - other.log_probs)).sum(-1)

    def kl(self, other: LatentDist) -> Tensor:
        return self.kl_groups(other).sum(-1)

    def entropy(self) -> Tensor:
        return -(self.probs * self.log_probs).sum((-1, -2))

    def expectation(self) -> Tensor:
        return self.probs

    def mode(self) -> Tensor:
        """One-hot argmax with a straight-through gradient (exactly one-hot in the forward)."""
        hot = torch.nn.functional.one_hot(self.probs.argmax(-1), self.probs.shape[-1])
        return hot.to(self.probs.dtype) + (self.probs - self.probs.detach())

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """One-hot draw with a straight-through gradient through the mixed probabilities."""
        flat = self.probs.detach().reshape(-1, self.probs.shape[-1])  # (N*G, K)
        index = torch.multinomial(flat, 1, generator=generator).reshape(self.probs.shape[:-1])
        hot = torch.nn.functional.one_hot(index, self.probs.shape[-1]).to(self.probs.dtype)
        return hot + (self.probs - self.probs.detach())

    def detach(self) -> Categorical:
        return Categorical(self.logits.detach(), self.unimix)

    def where(self, mask: Tensor, other: LatentDist) -> Categorical:
        """Rows where `mask` (batch shape) is true keep `self`, the others take `other`."""
        assert isinstance(other, Categorical), type(other)
        logits = torch.where(mask[..., None, None], self.logits, other.logits)
        return Categorical(logits, self.unimix)


class Gaussian:
    """Diagonal Gaussian latents (PlaNet / DreamerV1); each unit is its own group."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        assert mean.shape == std.shape, (mean.shape, std.shape)
        self.mean = mean
        self.std = std

    def kl_groups(self, other: LatentDist) -> Tensor:
        assert isinstance(other, Gaussian), type(other)
        var_ratio = (self.std / other.std) ** 2
        mahal = ((self.mean - other.mean) / other.std) ** 2
        return 0.5 * (var_ratio + mahal - 1.0 - torch.log(var_ratio))

    def kl(self, other: LatentDist) -> Tensor:
        return self.kl_groups(other).sum(-1)

    def entropy(self) -> Tensor:
        return (0.5 * torch.log(2 * torch.pi * torch.e * self.std**2)).sum(-1)

    def expectation(self) -> Tensor:
        return self.mean

    def mode(self) -> Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype)
        return self.mean + self.std * noise.to(self.mean.device)

    def detach(self) -> Gaussian:
        return Gaussian(self.mean.detach(), self.std.detach())

    def where(self, mask: Tensor, other: LatentDist) -> Gaussian:
        assert isinstance(other, Gaussian), type(other)
        m = mask[..., None]
        return Gaussian(torch.where(m, self.mean, other.mean), torch.where(m, self.std, other.std))


def stack(dists: list[LatentDist], dim: int = 1) -> LatentDist:
    """Stack per-step distributions along a new time axis (batch shape (B,) -> (B, T))."""
    first = dists[0]
    if isinstance(first, Categorical):
        logits = torch.stack([d.logits for d in dists], dim)  # type: ignore[attr-defined]
        return Categorical(logits, first.unimix)
    assert isinstance(first, Gaussian), type(first)
    return Gaussian(
        torch.stack([d.mean for d in dists], dim),  # type: ignore[attr-defined]
        torch.stack([d.std for d in dists], dim),  # type: ignore[attr-defined]
    )
