"""Trace metrics against hand-computed values, batch invariance and the probe variants."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from beliefscope.replay.base import Episode, EpisodeRef, detect_format
from beliefscope.rssm import formats
from beliefscope.rssm.core import ModelSpec, State
from beliefscope.rssm.dist import Categorical
from ingest.compute import BELIEF_METRICS, ComputeOptions, compute_traces, pad_batch
from ingest.variants import parse


class TwoStateCell(nn.Module):
    """One group of two classes. The prior is uniform; the posterior's logits are the frame's
    embedding; h_t counts steps. Small enough to compute every metric by hand."""

    def initial(self, batch: int) -> State:
        return {"deter": torch.zeros(batch, 1), "stoch": torch.zeros(batch, 1, 2)}

    def img_step(self, state: State, action: Tensor) -> tuple[Tensor, Categorical]:
        deter = state["deter"] + 1.0 + action[:, :1]
        return deter, Categorical(torch.zeros(len(deter), 1, 2))

    def obs_dist(self, deter: Tensor, embed: Tensor) -> Categorical:
        return Categorical(embed.view(-1, 1, 2))


class TwoStateModel(nn.Module):
    """Embedding = [log 3, 0] on bright frames, [0, 0] on dark ones; decodes a flat 0.5 image."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = TwoStateCell()
        self.spec = ModelSpec("test", "categorical", 1, 1, 2, 1, image_shape=(2, 2, 3))

    def encode(self, image: Tensor) -> Tensor:
        bright = (image.float().mean((-1, -2, -3)) > 127).float()  # (B, T)
        return torch.stack([bright * math.log(3.0), torch.zeros_like(bright)], -1)

    def feat(self, deter: Tensor, stoch: Tensor) -> Tensor:
        return torch.cat([stoch.flatten(-2), deter], -1)

    def decode(self, feat: Tensor) -> Tensor:
        return torch.full((*feat.shape[:-1], 2, 2, 3), 0.5)

    def reward(self, feat: Tensor) -> Tensor:
        return feat[..., -1] * 0.1

    def cont(self, feat: Tensor) -> Tensor:
        return torch.full(feat.shape[:-1], 0.9)


def _episode(bright: list[bool], key: str = "e") -> Episode:
    steps = len(bright)
    image = np.zeros((steps, 2, 2, 3), np.uint8)
    image[np.array(bright)] = 255
    is_first = np.zeros(steps, bool)
    is_first[0] = True
    return Episode(
        ref=EpisodeRef("test", Path(key), key, steps),
        image=image,
        action=np.zeros((steps, 1), np.float32),
        reward=np.arange(steps, dtype=np.float32),
        is_first=is_first,
        is_last=np.eye(steps, dtype=bool)[-1],
        is_terminal=np.zeros(steps, bool),
    )


def test_metrics_match_hand_computation() -> None:
    ep = _episode([True, False, True, True])
    (trace,) = compute_traces(TwoStateModel(), pad_batch([ep]), ComputeOptions(openloop=2))
    m = trace.metrics
    # bright frame: posterior p = 0.99 * [0.75, 0.25] + 0.005 against a uniform prior
    p = np.array([0.7475, 0.2525])
    kl_bright = float((p * np.log(p / 0.5)).sum())
    np.testing.assert_allclose(m["kl"], [kl_bright, 0.0, kl_bright, kl_bright], atol=1e-6)
    np.testing.assert_allclose(m["kl_dyn"], np.maximum(m["kl"], 1.0))
    np.testing.assert_allclose(m["correction"], [0.495, 0.0, 0.495, 0.495], atol=1e-6)
    np.testing.assert_allclose(m["prior_entropy"], math.log(2), atol=1e-6)
    np.testing.assert_allclose(m["post_entropy"][0], -(p * np.log(p)).sum(), atol=1e-6)
    # the decode is a flat 0.5: squared error 0.25 on black and on white frames
    np.testing.assert_allclose(m["recon_error"], 0.25, atol=1e-6)
    np.testing.assert_allclose(m["pred_error"], 0.25, atol=1e-6)
    np.testing.assert_allclose(m["deter_norm"], [1, 2, 3, 4], atol=1e-6)
    assert np.isnan(m["deter_delta"][0])
    np.testing.assert_allclose(m["deter_delta"][1:], 1.0, atol=1e-6)
    np.testing.assert_allclose(m["reward_pred"], [0.1, 0.2, 0.3, 0.4], atol=1e-6)
    np.testing.assert_allclose(m["reward"], [0, 1, 2, 3])
    # reward surprise: the reward against what the head reads from the prior's features
    np.testing.assert_allclose(m["reward_error"], [0.1, 0.8, 1.7, 2.6], atol=1e-6)
    np.testing.assert_allclose(m["cont_pred"], 0.9, atol=1e-6)
    np.testing.assert_allclose(m["cont"], 1.0)
    # open loop: defined from t = k on, and the flat decode errs by 0.25 everywhere
    assert np.isnan(m["openloop_error"][:2]).all()
    np.testing.assert_allclose(m["openloop_error"][2:], 0.25, atol=1e-6)
    assert trace.kl_groups.shape == (4, 1)
    np.testing.assert_allclose(trace.post_probs[0, 0], p, atol=1e-6)


class RewardFromBeliefModel(TwoStateModel):
    """Bright frames push the posterior to class 1 while the prior stays uniform (its mode:
    class 0); the reward head reads class 1's indicator, so a posterior-fed head says 1 on
    bright frames and a prior-fed one says 0."""

    def encode(self, image: Tensor) -> Tensor:
        bright = (image.float().mean((-1, -2, -3)) > 127).float()
        return torch.stack([torch.zeros_like(bright), bright * math.log(3.0)], -1)

    def reward(self, feat: Tensor) -> Tensor:
        return feat[..., 1]


def test_reward_surprise_is_measured_against_the_prior_s_expectation() -> None:
    ep = _episode([True, False, True, True])
    (trace,) = compute_traces(RewardFromBeliefModel(), pad_batch([ep]))
    m = trace.metrics
    np.testing.assert_allclose(m["reward_pred"], [1, 0, 1, 1], atol=1e-6)  # from the posterior
    np.testing.assert_allclose(m["reward_error"], [0, 1, 2, 3], atol=1e-6)  # |r - prior's 0|


def test_openloop_does_not_cross_a_reset() -> None:
    ep = _episode([True] * 6)
    ep.is_first[3] = True  # a second episode starts at t = 3
    (trace,) = compute_traces(TwoStateModel(), pad_batch([ep]), ComputeOptions(openloop=2))
    ol = trace.metrics["openloop_error"]
    assert np.isnan(ol[:2]).all() and np.isnan(ol[3:5]).all()  # windows (1,3] and (2,4], (3,5]
    assert np.isfinite(ol[2]) and np.isfinite(ol[5])


def test_dropout_advances_on_the_prior_and_delay_shows_old_frames() -> None:
    ep = _episode([True, True, True, True, False, False])
    model = TwoStateModel()
    dropout = parse("dropout:1-3")
    batch = dropout.apply(pad_batch([ep]), [ep])
    (trace,) = compute_traces(model, batch, ComputeOptions(openloop=0))
    np.testing.assert_allclose(trace.metrics["kl"][1:3], 0.0, atol=1e-7)
    assert trace.metrics["kl"][3] > 0.1 and trace.metrics["kl"][0] > 0.1
    delay = parse("delay:2")
    (delayed,) = compute_traces(
        model, delay.apply(pad_batch([ep]), [ep]), ComputeOptions(openloop=0)
    )
    # frames 4 and 5 are dark but the model sees frames 2 and 3 (bright) instead
    assert delayed.metrics["kl"][4] > 0.1 and delayed.metrics["kl"][5] > 0.1


def test_bad_probe_specs_are_refused() -> None:
    from beliefscope.errors import BadInputError

    for spec in ("dropout:5-2", "delay:0", "openloop:x", "warp:3"):
        with pytest.raises(BadInputError):
            parse(spec)


def test_batched_traces_equal_batch_of_one(world: Path, run_dir: Path) -> None:
    """The numbers of an episode must not depend on what else was in its batch."""
    model = formats.load(formats.discover(run_dir)[-1])
    fmt = detect_format(world)
    episodes = [fmt.load(ref) for ref in fmt.list(world)]
    episodes[1] = _truncate(episodes[1], 25)  # different lengths: padding is exercised
    options = ComputeOptions(openloop=3)
    batched = compute_traces(model, pad_batch(episodes), options)
    for ep, together in zip(episodes, batched, strict=True):
        (alone,) = compute_traces(model, pad_batch([ep]), options)
        assert together.length == ep.length
        for name, col in alone.metrics.items():
            np.testing.assert_allclose(
                together.metrics[name], col, atol=1e-5, rtol=1e-5, err_msg=name
            )


def _truncate(ep: Episode, steps: int) -> Episode:
    return Episode(
        ref=ep.ref,
        image=ep.image[:steps],
        action=ep.action[:steps],
        reward=ep.reward[:steps],
        is_first=ep.is_first[:steps],
        is_last=ep.is_last[:steps],
        is_terminal=ep.is_terminal[:steps],
        truth={k: v[:steps] for k, v in ep.truth.items()},
    )


class FilterOnlyModel(TwoStateModel):
    """A model whose decoder and heads fail when called."""

    def decode(self, feat: Tensor) -> Tensor:
        raise AssertionError("decoder called")

    def reward(self, feat: Tensor) -> Tensor:
        raise AssertionError("reward head called")

    def cont(self, feat: Tensor) -> Tensor:
        raise AssertionError("cont head called")


def test_belief_metrics_run_no_decoder_or_head() -> None:
    ep = _episode([True, False, True, True])
    options = ComputeOptions(metrics="belief")
    (trace,) = compute_traces(FilterOnlyModel(), pad_batch([ep]), options)
    (full,) = compute_traces(TwoStateModel(), pad_batch([ep]))
    assert set(trace.metrics) == set(BELIEF_METRICS)
    for name, col in trace.metrics.items():
        np.testing.assert_array_equal(col, full.metrics[name], err_msg=name)
    np.testing.assert_array_equal(trace.kl_groups, full.kl_groups)


def test_bf16_cnns_stay_close_to_fp32(world: Path, run_dir: Path) -> None:
    """`--precision bf16` rounds the CNNs' arithmetic (so the numbers move) and nothing else."""
    model = formats.load(formats.discover(run_dir)[-1])
    fmt = detect_format(world)
    batch = pad_batch([fmt.load(ref) for ref in fmt.list(world)])
    full = compute_traces(model, batch)
    bf16 = compute_traces(model, batch, ComputeOptions(precision="bf16"))
    moved = False
    for a, b in zip(full, bf16, strict=True):
        assert a.metrics.keys() == b.metrics.keys()
        for name in ("kl", "correction", "recon_error", "pred_error"):
            np.testing.assert_allclose(
                b.metrics[name], a.metrics[name], rtol=0.05, atol=0.05, err_msg=name
            )
        moved |= not np.array_equal(a.metrics["recon_error"], b.metrics["recon_error"])
        np.testing.assert_array_equal(a.metrics["reward"], b.metrics["reward"])
    assert moved
