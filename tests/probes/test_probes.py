"""Probes on real occlusion-world episodes and real native models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from beliefscope.errors import BadInputError
from beliefscope.replay.base import Episode, detect_format
from beliefscope.rssm.native import NativeWorldModel
from ingest import probes
from tests.builders import MICRO, make_world


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> list[Episode]:
    root = make_world(tmp_path_factory.mktemp("world"), episodes=6, length=40, seed=4)
    fmt = detect_format(root)
    return [fmt.load(ref) for ref in fmt.list(root)]


@pytest.fixture(scope="module")
def model() -> NativeWorldModel:
    torch.manual_seed(0)
    return NativeWorldModel(MICRO, action_dim=3).eval()


def test_ablated_memory_ignores_the_previous_state(model):
    ablated = probes.ablate_memory(model)
    a, b = model.cell.initial(2), model.cell.initial(2)
    b["deter"] = b["deter"] + 1.0
    act = torch.zeros(2, 3)
    with torch.inference_mode():
        h_a, _ = model.cell.img_step(a, act)
        h_b, _ = model.cell.img_step(b, act)
        g_a, _ = ablated.cell.img_step(a, act)
        g_b, _ = ablated.cell.img_step(b, act)
    assert not torch.allclose(h_a, h_b)  # the model remembers
    torch.testing.assert_close(g_a, g_b)  # the control does not
    torch.testing.assert_close(g_a, h_a)  # and is the model's own step from a fresh state
    assert ablated.spec == model.spec and ablated.encode is not None


def test_steps_since_occlusion_and_drift_by_hand():
    occ = np.array([0, 1, 1, 0, 1, 0], bool)
    assert probes.steps_since_occlusion(occ).tolist() == [0, 1, 2, 0, 1, 0]
    hidden = np.array([0, 1, 1, 0, 0, 1, 0], bool)
    drift = probes.dropout_drift(
        hidden,
        {
            "correction": np.array([0, 0, 0, 5.0, 1, 0, 3.0]),
            "recon_error": np.array([0, 2, 4, 0, 0, 6, 0.0]),
        },
        {"correction": np.zeros(7), "recon_error": np.array([0, 1, 1, 0, 0, 1, 0.0])},
    )
    assert drift.gap_steps == 3
    assert drift.resume_correction == 4.0  # steps 3 and 6
    assert drift.gap_pred_error == 4.0 and drift.filter_pred_error == 1.0


def test_horizon_curve_counts_start_points(model, episodes):
    ep = episodes[0]
    curve = probes.horizon_curve(model, [ep], horizon=6, stride=5)
    starts = np.arange(0, ep.length - 1, 5)
    assert curve.horizon.tolist() == [1, 2, 3, 4, 5, 6]
    assert curve.count.tolist() == [int((starts + h < ep.length).sum()) for h in range(1, 7)]
    assert np.all(np.isfinite(curve.error)) and np.all(curve.error > 0)


def test_belief_decoding_on_world_episodes(model, episodes):
    kicked = [bool(ep.truth["slip"].any()) for ep in episodes]
    hidden = [bool(ep.truth["occluded"].any()) for ep in episodes]
    test_ids = [kicked.index(True), next(i for i, h in enumerate(hidden) if h and not kicked[i])]
    test = [episodes[i] for i in test_ids]  # a slip and a plain occlusion
    train = [ep for i, ep in enumerate(episodes) if i not in test_ids]
    probe, report = probes.decode_beliefs(model, train, test, max_since=10)
    labels = [probes.occlusions(ep) for ep in test]
    since = np.concatenate([o.since for o in labels])
    slip = np.concatenate([o.slip for o in labels])
    for k in range(1, 11):
        assert report.plain_count[k - 1] == int(((since == k) & ~slip).sum())
        assert report.slip_count[k - 1] == int(((since == k) & slip).sum())
    assert report.plain_count.sum() > 0 and report.slip_count.sum() > 0
    assert [d.post.shape for d in report.decoded] == [(ep.length, 2) for ep in test]
    assert np.isfinite(report.visible_error) and report.visible_error < 0.5  # a 40 cm table
    # the fitted probe reproduces its training targets better than their mean does
    occ = probes.occlusions(train[0])
    beliefs = probes.decode_episode(model, probe, train[0])
    visible = occ.since == 0
    fit = np.linalg.norm(beliefs.post[visible] - occ.position[visible], axis=1).mean()
    mean = np.concatenate([probes.occlusions(ep).position for ep in train]).mean(0)
    assert fit < np.linalg.norm(occ.position[visible] - mean, axis=1).mean()
    # the belief jump is the distance between the prior's and the posterior's decodes
    np.testing.assert_allclose(
        beliefs.jump, np.linalg.norm(beliefs.post - beliefs.prior, axis=1), rtol=1e-12
    )
    assert (beliefs.jump >= 0).all() and beliefs.jump.max() > 0


def test_occlusion_labels_follow_the_ground_truth(episodes):
    for ep in episodes:
        occ = probes.occlusions(ep)
        hidden = occ.since > 0
        assert np.array_equal(hidden, np.asarray(ep.truth["occluded"], bool))
        # a kicked occlusion is a slip; the last visible position is exact on a plain one
        kicked = np.asarray(ep.truth["slip"], bool)
        assert not (kicked & hidden & ~occ.slip).any()
        plain = hidden & ~occ.slip & np.isfinite(occ.last_seen[:, 0])
        moved = np.linalg.norm(occ.position[plain] - occ.last_seen[plain], axis=1)
        assert (moved <= probes.KNOWN_TOL).all()
        assert not occ.slip[~hidden].any()


def test_ridge_probe_recovers_a_linear_readout_and_ignores_constant_features():
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(size=(500, 6)), np.ones(500)]  # a constant column
    w = rng.normal(size=(7, 2))
    y = x @ w + 0.01 * rng.normal(size=(500, 2))
    probe = probes.RidgeProbe.fit(x, y, alpha=1e-3)
    assert np.abs(probe.predict(x) - y).max() < 0.05
    strong = probes.RidgeProbe.fit(x, y, alpha=1e6)  # shrunk to the mean
    assert np.abs(strong.predict(x) - y.mean(0)).max() < 0.05


def test_imagined_futures_shapes_and_spread(model, episodes):
    ep = episodes[1]
    probe = probes.fit_decoder(model, episodes[:3])
    fut = probes.imagined_futures(model, probe, ep, samples=4, horizon=5, seed=1)
    assert fut.mean.shape == (ep.length, 5, 2) and fut.spread.shape == (ep.length, 5)
    assert np.isnan(fut.spread[-1]).all() and np.isfinite(fut.spread[: ep.length - 5]).all()
    assert (fut.spread[: ep.length - 5] >= 0).all() and fut.spread[: ep.length - 5].max() > 0
    single = probes.imagined_futures(model, probe, ep, samples=1, horizon=5)
    assert np.nanmax(single.spread) == 0.0
    again = probes.imagined_futures(model, probe, ep, samples=4, horizon=5, seed=1)
    np.testing.assert_array_equal(again.mean, fut.mean)


def test_probe_needs_ground_truth(model, episodes):
    bare = Episode(**{**episodes[0].__dict__, "truth": {}})
    with pytest.raises(BadInputError, match="needs ground truth"):
        probes.fit_decoder(model, [bare])
    with pytest.raises(BadInputError, match="needs ground truth"):
        probes.occlusions(bare)
    assert Path(episodes[0].ref.path).is_file()
