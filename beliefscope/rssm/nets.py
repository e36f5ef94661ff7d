"""Building blocks of the native model: DreamerV3's LayerNorm GRU, CNNs and symlog heads."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

NORM_EPS = 1e-3  # DreamerV3's LayerNorm epsilon


def symlog(x: Tensor) -> Tensor:
    """Compress large magnitudes but keep small values nearly unchanged (DreamerV3)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


def dense(inputs: int, units: int) -> nn.Sequential:
    """Linear -> LayerNorm -> SiLU; the bias is redundant before the norm."""
    return nn.Sequential(
        nn.Linear(inputs, units, bias=False), nn.LayerNorm(units, eps=NORM_EPS), nn.SiLU()
    )


class LayerNormGRU(nn.Module):
    """DreamerV3's GRU: one fused linear, LayerNorm on the pre-activations, update bias -1.

    The reset gate multiplies the candidate's pre-activation (not the previous state), and the
    -1 bias on the update gate makes the cell keep its memory by default at initialisation.
    """

    def __init__(self, inputs: int, deter: int) -> None:
        super().__init__()
        self.linear = nn.Linear(inputs + deter, 3 * deter, bias=False)
        self.norm = nn.LayerNorm(3 * deter, eps=NORM_EPS)

    def forward(self, x: Tensor, deter: Tensor) -> Tensor:
        parts = self.norm(self.linear(torch.cat([x, deter], -1)))  # (B, 3D)
        reset, cand, update = parts.chunk(3, -1)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * deter


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of an image tensor (N, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        return self.norm(x).permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)


def stages(size: int) -> int:
    """Stride-2 stages from `size` down to DreamerV3's 4x4 minimum resolution."""
    count = int(math.log2(size / 4)) if size >= 8 else 0
    if count < 1 or 4 * 2**count != size:
        raise ValueError(f"image size must be 4 * 2^k with k >= 1, got {size}")
    return count


class Encoder(nn.Module):
    """(B, T, H, W, C) uint8 frames -> (B, T, E): stride-2 convs, channel LayerNorm, SiLU."""

    def __init__(self, image_shape: tuple[int, int, int], depth: int) -> None:
        super().__init__()
        height, width, channels = image_shape
        assert height == width, image_shape
        layers: list[nn.Module] = []
        inputs = channels
        for i in range(stages(height)):
            outputs = depth * 2**i
            layers += [
                nn.Conv2d(inputs, outputs, 4, 2, 1, bias=False),
                ChannelNorm(outputs),
                nn.SiLU(),
            ]
            inputs = outputs
        self.net = nn.Sequential(*layers)
        self.outdim = inputs * 4 * 4

    def forward(self, image: Tensor) -> Tensor:
        assert image.ndim == 5, image.shape
        lead = image.shape[:2]
        x = image.flatten(0, 1).to(torch.float32) / 255.0 - 0.5  # (B*T, H, W, C)
        x = self.net(x.permute(0, 3, 1, 2))  # (B*T, H, W, C) -> (B*T, C, H, W)
        return x.reshape(*lead, self.outdim)  # (B*T, C', 4, 4) -> (B, T, E)


class Decoder(nn.Module):
    """(..., F) -> (..., H, W, C) image in symlog space of the centred pixels (image/255 - 0.5)."""

    def __init__(self, feat: int, image_shape: tuple[int, int, int], depth: int) -> None:
        super().__init__()
        height, _, channels = image_shape
        count = stages(height)
        self.top = depth * 2 ** (count - 1)
        self.image_shape = image_shape
        self.linear = nn.Linear(feat, self.top * 4 * 4)
        layers: list[nn.Module] = []
        inputs = self.top
        for i in reversed(range(count)):
            last = i == 0
            outputs = channels if last else depth * 2 ** (i - 1)
            layers.append(nn.ConvTranspose2d(inputs, outputs, 4, 2, 1, bias=last))
            if not last:
                layers += [ChannelNorm(outputs), nn.SiLU()]
            inputs = outputs
        self.net = nn.Sequential(*layers)

    def forward(self, feat: Tensor) -> Tensor:
        lead = feat.shape[:-1]
        x = self.linear(feat.reshape(-1, feat.shape[-1]))  # (..., F) -> (N, 16 C)
        x = self.net(x.reshape(-1, self.top, 4, 4))  # (N, 16 C) -> (N, C, 4, 4) -> (N, c, H, W)
        return x.permute(0, 2, 3, 1).reshape(*lead, *self.image_shape)  # -> (..., H, W, c)


class Head(nn.Module):
    """MLP on `feat` with `layers` hidden dense layers and a linear output."""

    def __init__(self, feat: int, units: int, layers: int, outputs: int, zero_init: bool) -> None:
        super().__init__()
        hidden = [dense(feat if i == 0 else units, units) for i in range(layers)]
        out = nn.Linear(units if layers else feat, outputs)
        if zero_init:  # DreamerV3 starts the reward head at a prediction of exactly 0
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*hidden, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TwoHot:
    """Symlog two-hot regression over fixed bins: a classification loss for scalar targets."""

    def __init__(self, bins: int, bin_range: float) -> None:
        self.bins = torch.linspace(-bin_range, bin_range, bins)

    def mean(self, logits: Tensor) -> Tensor:
        """(..., bins) -> (...) the predicted value, decoded from symlog space."""
        bins = self.bins.to(logits.device, logits.dtype)
        return symexp((torch.softmax(logits, -1) * bins).sum(-1))

    def target(self, value: Tensor) -> Tensor:
        """(...) -> (..., bins): weights on the two bins around symlog(value), mean exact."""
        bins = self.bins.to(value.device, value.dtype)
        y = symlog(value).clamp(bins[0], bins[-1])
        below = ((bins <= y[..., None]).sum(-1) - 1).clamp(0, len(bins) - 1)
        above = (below + 1).clamp(max=len(bins) - 1)
        same = below == above
        to_below = torch.where(same, 1.0, (bins[below] - y).abs())
        to_above = torch.where(same, 1.0, (bins[above] - y).abs())
        total = to_below + to_above
        return (
            F.one_hot(below, len(bins)) * (to_above / total)[..., None]
            + F.one_hot(above, len(bins)) * (to_below / total)[..., None]
        )

    def loss(self, logits: Tensor, value: Tensor) -> Tensor:
        """(..., bins), (...) -> (...) cross-entropy against the two-hot target."""
        return -(self.target(value) * torch.log_softmax(logits, -1)).sum(-1)
