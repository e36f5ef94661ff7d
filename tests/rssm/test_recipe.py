"""Memory levers of `beliefscope train`: dropout withholds exactly what it says, the posterior is
the prior there, overshooting and the reward weight enter the loss, runs stay reproducible, and
a stopped run resumes to the weights an uninterrupted one reaches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from beliefscope.cli import main
from beliefscope.errors import BadInputError
from beliefscope.rssm.checkpoint import load_checkpoint
from beliefscope.rssm.native import NativeWorldModel
from beliefscope.rssm.recipe import GREY, Recipe, dropout_mask, occlude_frames
from beliefscope.rssm.train import Stream, train
from tests.rssm.conftest import MICRO, square_world, write_replay

LEVERS = Recipe(dropout=0.75, dropout_len=(2, 4), overshoot=3, reward_scale=5.0, occlude=0.5)


def _batch(stream: Stream, seed: int = 0, batch: int = 6, length: int = 10) -> dict:
    return stream.sample(np.random.default_rng(seed), batch, length, torch.device("cpu"))


def test_dropout_withholds_one_block_of_the_asked_length_in_the_asked_fraction() -> None:
    rng = np.random.default_rng(3)
    is_first = np.zeros((4000, 20), bool)
    is_first[:, 0] = True
    is_first[::7, 9] = True  # a reset inside some windows
    mask = dropout_mask(rng, is_first, Recipe(dropout=0.5, dropout_len=(3, 6)))
    assert mask is not None and mask.shape == is_first.shape
    assert mask[:, 0].all() and mask[is_first].all()  # no reset step is ever withheld
    hidden = ~mask
    windows = hidden.any(1)
    assert abs(windows.mean() - 0.5) < 0.03
    for row in np.flatnonzero(windows & ~is_first[:, 9]):  # untouched by a reset: one block
        steps = np.flatnonzero(hidden[row])
        assert 3 <= len(steps) <= 6 and np.all(np.diff(steps) == 1), steps
    lengths = hidden[windows & ~is_first[:, 9]].sum(1)
    assert set(lengths.tolist()) == {3, 4, 5, 6}
    assert dropout_mask(rng, is_first, Recipe()) is None


def test_synthetic_occluders_hide_one_rectangle_from_the_encoder_only() -> None:
    rng = np.random.default_rng(5)
    image = np.random.default_rng(0).integers(0, 120, (600, 12, 16, 16, 3), dtype=np.uint8)
    is_first = np.zeros((600, 12), bool)
    is_first[:, 0] = True
    recipe = Recipe(occlude=0.5, occlude_len=(2, 5), occlude_size=(0.25, 0.5))
    before = image.copy()
    seen = occlude_frames(rng, image, is_first, recipe)
    assert seen is not None and np.array_equal(image, before)  # the decoder's target is intact
    grey = (seen == GREY).all(-1)  # (B, T, H, W): pixels hidden (the frames never hold 128)
    hidden_steps = grey.any((2, 3))
    windows = hidden_steps.any(1)
    assert abs(windows.mean() - 0.5) < 0.06 and not hidden_steps[:, 0].any()
    for b in np.flatnonzero(windows):
        steps = np.flatnonzero(hidden_steps[b])
        assert 2 <= len(steps) <= 5 and np.all(np.diff(steps) == 1)
        first = grey[b, steps[0]]
        assert all(np.array_equal(grey[b, t], first) for t in steps)  # one rectangle, held
        ys, xs = np.flatnonzero(first.any(1)), np.flatnonzero(first.any(0))
        assert first[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1].all()  # a filled rectangle
        assert 4 <= len(ys) <= 8 and 4 <= len(xs) <= 8
    untouched = ~grey
    assert np.array_equal(seen[untouched], image[untouched])
    assert occlude_frames(rng, image, is_first, Recipe()) is None


def test_the_loss_encodes_the_occluded_view_and_decodes_the_clean_frames() -> None:
    stream = Stream.join(square_world(4, 12))
    torch.manual_seed(0)
    model = NativeWorldModel(MICRO, 2, (16, 16, 3))
    batch = _batch(stream)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    seen = batch["image"].clone()
    seen[:, 2:6, 4:12, 4:12] = GREY
    clean, clean_m = model.loss(batch, gen())
    hidden, hidden_m = model.loss({**batch, "seen": seen}, gen())
    assert hidden_m["image"] != pytest.approx(clean_m["image"], rel=1e-4)
    # the same as encoding the grey frames but scoring the clean ones: not the grey ones
    grey_target, _ = model.loss({**batch, "image": seen}, gen())
    assert float(hidden) != pytest.approx(float(grey_target), rel=1e-4)


def test_posterior_is_the_prior_on_withheld_frames_and_the_loss_decodes_them() -> None:
    stream = Stream.join(square_world(4, 12))
    torch.manual_seed(0)
    model = NativeWorldModel(MICRO, 2, (16, 16, 3))
    batch = _batch(stream)
    observed = torch.ones(6, 10, dtype=torch.bool)
    observed[:, 3:7] = False
    traj = model.observe(
        model.encode(batch["image"]), batch["action"], batch["is_first"], observed=observed
    )
    assert torch.equal(traj.post.probs[:, 3:7], traj.prior.probs[:, 3:7])
    assert torch.all(traj.post.kl(traj.prior)[:, 3:7] == 0)
    assert torch.all(traj.post.kl(traj.prior)[:, 7:] > 0)
    # the loss with frames withheld differs from the loss with all frames seen: the decoder is
    # asked to draw those frames from the prior
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    seen, _ = model.loss(batch, gen())
    withheld, _ = model.loss({**batch, "observed": observed}, gen())
    assert float(withheld) != pytest.approx(float(seen), rel=1e-4)


def test_overshooting_and_reward_weight_change_the_loss_as_documented() -> None:
    stream = Stream.join(square_world(4, 12))
    torch.manual_seed(0)
    model = NativeWorldModel(MICRO, 2, (16, 16, 3))
    batch = _batch(stream)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    base, base_m = model.loss(batch, gen())
    weighted, weighted_m = model.loss(batch, gen(), Recipe(reward_scale=3.0))
    assert float(weighted) == pytest.approx(float(base) + 2.0 * base_m["reward"], rel=1e-5)
    over, over_m = model.loss(batch, gen(), Recipe(overshoot=4, overshoot_scale=0.5))
    assert "overshoot" in over_m and over_m["overshoot"] > 0
    assert float(over) == pytest.approx(base_m["loss"] + 0.5 * over_m["overshoot"], rel=1e-4)
    over.backward()  # gradients reach the dynamics through the imagined steps
    assert model.cell.gru.linear.weight.grad is not None


def test_overshooting_never_decodes_across_a_reset() -> None:
    torch.manual_seed(0)
    model = NativeWorldModel(MICRO, 2, (16, 16, 3))
    stream = Stream.join(square_world(4, 12))
    batch = _batch(stream, length=6)
    batch["is_first"][:, 1:] = True  # every step a reset: nothing can be imagined
    _, metrics = model.loss(batch, torch.Generator().manual_seed(0), Recipe(overshoot=3))
    assert metrics["overshoot"] == 0.0


def _fit(stream: Stream, out: Path, steps: int, **kw) -> list[Path]:  # noqa: ANN003
    return train(
        stream,
        out,
        preset=MICRO,
        steps=steps,
        save_every=2,
        batch=4,
        length=8,
        progress=False,
        recipe=LEVERS,
        **kw,
    )


def test_levers_are_reproducible_and_recorded_in_the_checkpoint(tmp_path: Path) -> None:
    stream = Stream.join(square_world(3, 16))
    a = _fit(stream, tmp_path / "a", 4)
    b = _fit(stream, tmp_path / "b", 4)
    assert a[-1].read_bytes() == b[-1].read_bytes()
    model = load_checkpoint(a[-1])
    assert Recipe.from_dict(model.spec.config["recipe"]) == LEVERS
    plain = train(
        stream,
        tmp_path / "c",
        preset=MICRO,
        steps=4,
        save_every=4,
        batch=4,
        length=8,
        progress=False,
    )
    assert plain[-1].read_bytes() != a[-1].read_bytes()
    assert Recipe.from_dict(load_checkpoint(plain[-1]).spec.config["recipe"]).is_default


def test_a_stopped_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    stream = Stream.join(square_world(3, 16))
    whole = _fit(stream, tmp_path / "whole", 6)
    _fit(stream, tmp_path / "parts", 2)
    resumed = _fit(stream, tmp_path / "parts", 6, resume=True)
    assert [p.name for p in resumed] == ["ckpt-00000004.safetensors", "ckpt-00000006.safetensors"]
    assert resumed[-1].read_bytes() == whole[-1].read_bytes()
    with pytest.raises(BadInputError, match="already at step 6"):
        _fit(stream, tmp_path / "parts", 6, resume=True)
    with pytest.raises(BadInputError, match="recipe"):
        train(
            stream,
            tmp_path / "parts",
            preset=MICRO,
            steps=8,
            save_every=2,
            batch=4,
            length=8,
            progress=False,
            resume=True,
        )
    other = Stream.join(square_world(3, 16, seed=1))
    with pytest.raises(BadInputError, match="replay differs"):
        _fit(other, tmp_path / "parts", 8, resume=True)


def test_cli_levers_fine_tune_and_resume(tmp_path: Path) -> None:
    replay = write_replay(tmp_path / "replay", square_world(3, 12))
    base = [
        "train",
        "--replay",
        str(replay),
        "--threads",
        "1",
        "--quiet",
        "--batch",
        "2",
        "--length",
        "6",
        "--save-every",
        "2",
    ]
    levers = ["--dropout", "0.5", "--dropout-len", "2-3", "--overshoot", "2", "--reward-scale", "4"]
    levers += ["--occlude", "0.5", "--occlude-size", "0.3-0.4"]
    assert main([*base, "--out", str(tmp_path / "a"), "--steps", "2", *levers]) == 0
    first = tmp_path / "a" / "ckpt-00000002.safetensors"
    recipe = Recipe.from_dict(load_checkpoint(first).spec.config["recipe"])
    assert recipe == Recipe(
        dropout=0.5,
        dropout_len=(2, 3),
        overshoot=2,
        reward_scale=4.0,
        occlude=0.5,
        occlude_size=(0.3, 0.4),
    )
    assert main([*base, "--out", str(tmp_path / "a"), "--steps", "4", "--resume", *levers]) == 0
    assert (tmp_path / "a" / "ckpt-00000004.safetensors").is_file()
    # a fine-tune starts from the checkpoint's weights and keeps its preset
    assert main([*base, "--out", str(tmp_path / "ft"), "--steps", "2", "--init", str(first)]) == 0
    tuned = load_checkpoint(tmp_path / "ft" / "ckpt-00000002.safetensors")
    assert tuned.preset == load_checkpoint(first).preset
    assert main([*base, "--out", str(tmp_path / "x"), "--steps", "2", "--dropout-len", "5"]) == 2
