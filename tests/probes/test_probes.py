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
    train, test = episodes[:4], episodes[4:]
    probe, result = probes.decode_beliefs(model, train, test, max_since=10)
    hidden = np.concatenate([probes.steps_since_occlusion(ep.truth["occluded"]) for ep in test])
    assert result.count.tolist() == [int((hidden == k).sum()) for k in range(1, 11)]
    assert [d.shape for d in result.decoded] == [(ep.length, 2) for ep in test]
    assert (
        np.isfinite(result.visible_error) and result.visible_error < 0.5
    )  # metres on a 40 cm table
    # the fitted probe reproduces its training targets better than their mean does
    x = probes.episode_features(model, train[0])
    y = train[0].truth["qpos"][:, :2]
    visible = ~train[0].truth["occluded"]
    fit = np.linalg.norm(probe.predict(x[visible]) - y[visible], axis=1).mean()
    mean = np.concatenate([ep.truth["qpos"][:, :2] for ep in train]).mean(0)
    assert fit < np.linalg.norm(y[visible] - mean, axis=1).mean()


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
    assert Path(episodes[0].ref.path).is_file()
