"""Training: it learns, it is reproducible, it writes loadable checkpoints, it refuses bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from beliefscope.cli import main
from beliefscope.errors import BadInputError
from beliefscope.rssm.checkpoint import load_checkpoint
from beliefscope.rssm.native import NativeWorldModel
from beliefscope.rssm.train import Stream, train
from tests.rssm.conftest import MICRO, square_world, write_replay


def _fit(stream: Stream, out: Path, steps: int, seed: int = 0) -> list[Path]:
    return train(
        stream,
        out,
        preset=MICRO,
        steps=steps,
        save_every=2,
        batch=4,
        length=8,
        seed=seed,
        progress=False,
    )


def test_training_lowers_the_loss_on_a_learnable_world() -> None:
    stream = Stream.join(square_world(8, 24))
    torch.manual_seed(0)
    model = NativeWorldModel(MICRO, 2, (16, 16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    held_out = stream.sample(np.random.default_rng(99), 8, 12, torch.device("cpu"))

    def evaluate() -> dict[str, float]:
        with torch.no_grad():
            return model.loss(held_out, torch.Generator().manual_seed(1))[1]

    before = evaluate()
    for _ in range(60):
        loss, _ = model.loss(stream.sample(rng, 8, 12, torch.device("cpu")), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate()
    assert after["loss"] < 0.5 * before["loss"], (before, after)
    assert after["image"] < 0.5 * before["image"], (before, after)
    assert after["reward"] < before["reward"], (before, after)


def test_same_seed_same_data_same_weights(tmp_path: Path) -> None:
    stream = Stream.join(square_world(3, 16))
    a = _fit(stream, tmp_path / "a", steps=3)
    b = _fit(stream, tmp_path / "b", steps=3)
    c = _fit(stream, tmp_path / "c", steps=3, seed=1)
    assert [p.name for p in a] == ["ckpt-00000002.safetensors", "ckpt-00000003.safetensors"]
    wa, wb, wc = (load_checkpoint(paths[-1]).state_dict() for paths in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a[-1].read_bytes() == b[-1].read_bytes()


def test_train_refuses_a_run_dir_with_checkpoints_and_keeps_them(tmp_path: Path) -> None:
    stream = Stream.join(square_world(2, 16))
    first = _fit(stream, tmp_path, steps=2)
    before = first[0].read_bytes()
    with pytest.raises(BadInputError, match="already holds checkpoints"):
        _fit(stream, tmp_path, steps=2)
    assert first[0].read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt-00000002.safetensors",
        "train-state.safetensors",
    ]


def test_mismatched_episodes_are_rejected_naming_the_file() -> None:
    episodes = square_world(2, 10)
    odd = square_world(1, 10, size=32)[0]
    with pytest.raises(BadInputError, match=r"synthetic/ep0\.npz: frames are \(32, 32, 3\)"):
        Stream.join([*episodes, odd])
    with pytest.raises(BadInputError, match="fewer than --length"):
        train(Stream.join(episodes), Path("unused"), preset=MICRO, steps=1, save_every=1, length=64)


def test_cli_reports_a_missing_replay_dir_in_one_line(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope"
    code = main(
        [
            "train",
            "--replay",
            str(missing),
            "--out",
            str(tmp_path / "run"),
            "--steps",
            "1",
            "--save-every",
            "1",
            "--threads",
            "1",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and str(missing) in err and "does not exist" in err
    assert not (tmp_path / "run").exists()


def _cli(replay: Path, out: Path, *extra: str) -> int:
    return main(
        ["train", "--replay", str(replay), "--out", str(out), "--threads", "1", "--quiet", *extra]
    )


def test_cli_trains_from_a_replay_dir_and_writes_loadable_checkpoints(tmp_path: Path) -> None:
    episodes = square_world(3, 10)
    replay = write_replay(tmp_path / "replay", episodes)
    args = ["--steps", "3", "--save-every", "2", "--batch", "2", "--length", "6", "--seed", "5"]
    assert _cli(replay, tmp_path / "run", *args) == 0
    names = sorted(p.name for p in (tmp_path / "run").glob("ckpt-*"))
    assert names == ["ckpt-00000002.safetensors", "ckpt-00000003.safetensors"]
    assert (tmp_path / "run" / "train-state.safetensors").is_file()
    model = load_checkpoint(tmp_path / "run" / names[-1])
    assert model.preset.name == "tiny" and model.spec.image_shape == (16, 16, 3)
    assert model.spec.action_dim == 2 and model.spec.config["step"] == 3
    # Same seed, same data, same weights: through the files, end to end.
    assert _cli(replay, tmp_path / "again", *args) == 0
    again = tmp_path / "again" / names[-1]
    assert again.read_bytes() == (tmp_path / "run" / names[-1]).read_bytes()


def test_cli_rejects_an_episode_with_wrong_keys_naming_it(tmp_path: Path, capsys) -> None:
    replay = write_replay(tmp_path / "replay", square_world(2, 10))
    bad = sorted(replay.glob("*.npz"))[1]
    arrays = dict(np.load(bad, allow_pickle=False))
    del arrays["reward"]
    np.savez(bad, **arrays)
    assert _cli(replay, tmp_path / "run", "--steps", "1", "--save-every", "1") == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "reward" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_cli_rejects_an_unknown_device(tmp_path: Path, capsys) -> None:
    replay = write_replay(tmp_path / "replay", square_world(1, 10))
    code = _cli(replay, tmp_path / "run", "--steps", "1", "--save-every", "1", "--device", "tpu9")
    assert code == 2 and "unknown --device 'tpu9'" in capsys.readouterr().err


def test_the_same_episodes_under_other_file_names_give_the_same_weights(tmp_path: Path) -> None:
    """The stream is ordered by content: renaming or re-saving a replay changes nothing."""
    episodes = square_world(3, 10)
    first = write_replay(tmp_path / "first", episodes)
    renamed = write_replay(tmp_path / "renamed", list(reversed(episodes)))
    args = ["--steps", "2", "--save-every", "2", "--batch", "2", "--length", "6"]
    assert _cli(first, tmp_path / "a", *args) == 0
    assert _cli(renamed, tmp_path / "b", *args) == 0
    name = "ckpt-00000002.safetensors"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
