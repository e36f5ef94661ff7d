"""Building blocks: symlog, two-hot, the LayerNorm GRU's gates, CNN shapes."""

from __future__ import annotations

import pytest
import torch

from beliefscope.rssm.nets import Decoder, Encoder, LayerNormGRU, TwoHot, symexp, symlog


def test_symlog_inverts_and_compresses() -> None:
    x = torch.tensor([-1e4, -3.0, -0.5, 0.0, 0.5, 3.0, 1e4], dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(x)), x)
    assert float(symlog(torch.tensor(1e4))) == pytest.approx(torch.log1p(torch.tensor(1e4)).item())


def test_two_hot_target_has_the_exact_mean_and_decodes_back() -> None:
    twohot = TwoHot(255, 20.0)
    values = torch.tensor([0.0, 0.3, -2.5, 17.0, -400.0, 1e6])
    target = twohot.target(values)
    assert torch.all((target > 0).sum(-1) <= 2)
    torch.testing.assert_close(target.sum(-1), torch.ones(6))
    clipped = symlog(values).clamp(-20, 20)
    torch.testing.assert_close((target * twohot.bins).sum(-1), clipped)
    # A head whose softmax equals the target predicts the value back (within float error).
    logits = torch.log(target + 1e-12)
    torch.testing.assert_close(twohot.mean(logits)[:4], values[:4], rtol=1e-4, atol=1e-4)
    # The loss is the cross-entropy, minimal (= target entropy) at the target itself.
    assert float(twohot.loss(logits, values).mean()) < float(
        twohot.loss(torch.zeros(6, 255), values).mean()
    )


def test_gru_gates_follow_dreamerv3() -> None:
    """Zero weights: update gate = sigmoid(-1) keeps memory; reset scales the candidate."""
    gru = LayerNormGRU(3, 4)
    torch.nn.init.zeros_(gru.linear.weight)
    deter = torch.tensor([[0.5, -1.0, 0.25, 2.0]])
    keep = 1 - torch.sigmoid(torch.tensor(-1.0))
    torch.testing.assert_close(gru(torch.randn(1, 3), deter), keep * deter)
    # Pre-activations set through the norm's bias: reset r, candidate c, update u.
    r, c, u = 0.7, 1.3, 0.4
    with torch.no_grad():
        gru.norm.bias.copy_(torch.tensor([r] * 4 + [c] * 4 + [u] * 4))
    update = torch.sigmoid(torch.tensor(u - 1.0))
    expected = update * torch.tanh(torch.sigmoid(torch.tensor(r)) * c) + (1 - update) * deter
    torch.testing.assert_close(gru(torch.randn(1, 3), deter), expected)


@pytest.mark.parametrize(("size", "embed"), [(16, 8 * 16), (64, 32 * 16)])
def test_encoder_and_decoder_shapes(size: int, embed: int) -> None:
    """Channels double per stride-2 stage down to 4x4: depth 4 -> 4, 8[, 16, 32] channels."""
    enc = Encoder((size, size, 3), depth=4)
    frames = torch.randint(0, 256, (2, 3, size, size, 3), dtype=torch.uint8)
    assert enc(frames).shape == (2, 3, embed)
    dec = Decoder(10, (size, size, 3), depth=4)
    assert dec(torch.randn(2, 3, 10)).shape == (2, 3, size, size, 3)


def test_image_size_must_reach_4x4() -> None:
    with pytest.raises(ValueError, match="4 \\* 2\\^k"):
        Encoder((48, 48, 3), depth=4)
