"""Replay readers of the DreamerV3 family: chunk streams and dreamerv3-torch episode files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from beliefscope.errors import BadInputError
from beliefscope.replay.base import EpisodeRef, detect_format, get_format
from beliefscope.store.engine import open_store
from tests.families.conftest import OFFICIAL_DIR, TORCH_DIR

CHUNKS = sorted((OFFICIAL_DIR / "replay").glob("*.npz"))


def _uid(n: int) -> str:
    return f"{n:022d}".replace("0", "a")


def _write_chunk(
    folder: Path, n: int, succ: int | None, is_first: list[bool], is_last: list[bool]
) -> Path:
    """A chunk in the official layout: row t holds obs t and the action chosen after it."""
    length = len(is_first)
    rows = np.arange(length) + 1000 * n
    path = (
        folder
        / f"20260101T0000{n:02d}F000000-{_uid(n)}-{_uid(succ) if succ else '0' * 22}-{length}.npz"
    )
    np.savez_compressed(
        path,
        image=(rows[:, None, None, None] % 251).astype(np.uint8) * np.ones((1, 4, 4, 3), np.uint8),
        action=(rows % 3).astype(np.int32),
        reward=rows.astype(np.float32),
        is_first=np.array(is_first),
        is_last=np.array(is_last),
        is_terminal=np.zeros(length, bool),
    )
    return path


def _three_chunks(folder: Path) -> list[Path]:
    """Episodes: a fragment, one spanning all three chunks, one whole, and an unfinished tail."""
    folder.mkdir(parents=True)
    f, t = False, True
    return [
        _write_chunk(folder, 1, 2, [f, t, f, f], [t, f, f, f]),
        _write_chunk(folder, 2, 3, [f, f, f], [f, f, f]),
        _write_chunk(folder, 3, 4, [f, f, t, f, f, f, t, f], [f, t, f, f, f, t, f, f]),
    ]


def test_fixture_chunks_split_into_whole_episodes() -> None:
    fmt = detect_format(OFFICIAL_DIR)
    assert fmt.name == "dreamerv3-chunks"
    refs = fmt.list(OFFICIAL_DIR)
    assert [r.length for r in refs] == [41, 41, 41, 41]
    assert [r.extra[0] for r in refs] == ["5", "46", "15", "56"]
    assert [len(r.extra) for r in refs] == [2, 3, 2, 2]  # the second crosses into chunk 2
    assert len({r.key for r in refs}) == 4


def test_crossing_episode_matches_the_reference_rows() -> None:
    fmt = get_format("dreamerv3-chunks")
    ref = fmt.list(OFFICIAL_DIR)[1]
    episode = fmt.load(ref)
    with np.load(OFFICIAL_DIR / "reference.npz") as expected:
        assert np.array_equal(episode.image[:32], expected["image"])
        assert np.array_equal(episode.action[:32, 0], expected["prev_action"])  # shifted by one
        assert np.array_equal(episode.reward[:32], expected["reward"])
        assert np.array_equal(episode.is_first[:32], expected["is_first"])
    assert episode.action.shape == (41, 1) and episode.action.dtype == np.float32
    assert episode.is_first[0] and episode.is_last[-1] and episode.is_last.sum() == 1
    for t in (0, 25, 26, 40):  # both sides of the chunk boundary
        assert np.array_equal(fmt.frame(ref, t), episode.image[t])


def test_a_stored_episode_finds_its_stream_again(sqlite_url: str) -> None:
    """The store keeps each ref's locator (part, chunk files): the ref read back from it is the
    listed one, so scoring, probes and frames load the episode that crosses a chunk boundary."""
    fmt = get_format("dreamerv3-chunks")
    store = open_store(sqlite_url)
    run = store.writer.ensure_run("official", logdir=str(OFFICIAL_DIR))
    for ref in fmt.list(OFFICIAL_DIR):
        episode_id = store.writer.ensure_episode(
            run,
            key=ref.key,
            format=ref.format,
            source_path=str(ref.path),
            length=ref.length,
            locator=ref.locator,
        )
        back = EpisodeRef.stored(store.queries.get_episode(episode_id=episode_id))
        assert back == ref
        assert np.array_equal(fmt.load(back).image, fmt.load(ref).image)
    store.close()


def test_streams_follow_succ_links_across_several_chunks(tmp_path: Path) -> None:
    _three_chunks(tmp_path / "replay")
    fmt = detect_format(tmp_path)
    refs = fmt.list(tmp_path)
    assert [(r.length, len(r.extra) - 1) for r in refs] == [(3 + 3 + 2, 3), (4, 1)]
    episode = fmt.load(refs[0])
    assert episode.reward.tolist() == [1001, 1002, 1003, 2000, 2001, 2002, 3000, 3001]
    assert episode.action[:, 0].tolist() == [
        0,
        1001 % 3,
        1002 % 3,
        1003 % 3,
        2000 % 3,
        2001 % 3,
        2002 % 3,
        3000 % 3,
    ]
    assert episode.is_first.tolist() == [True] + [False] * 7
    assert np.array_equal(fmt.frame(refs[0], 6), episode.image[6])
    assert fmt.load(refs[1]).reward.tolist() == [3002, 3003, 3004, 3005]


def test_missing_succ_chunk_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    paths = _three_chunks(tmp_path / "replay")
    fmt = get_format("dreamerv3-chunks")
    spanning = fmt.list(tmp_path)[0]
    paths[1].unlink()
    with pytest.raises(BadInputError, match="continues in chunk .*succ link.*missing") as err:
        fmt.load(spanning)
    assert err.value.path == str(paths[0])
    with pytest.raises(BadInputError, match="missing"):
        fmt.frame(spanning, 7)
    assert [r.length for r in fmt.list(tmp_path)] == [4]  # the broken episode is no longer whole


def test_chunk_name_without_succ_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "replay"
    folder.mkdir()
    shutil.copy(CHUNKS[0], folder)
    bad = folder / "20261125T041309F145923-6iE5O9XoXH67Ey8kygKanZ-72.npz"
    shutil.copy(CHUNKS[1], bad)
    with pytest.raises(BadInputError, match="succ link cannot be read") as err:
        get_format("dreamerv3-chunks").list(tmp_path)
    assert err.value.path == str(bad)


def test_torch_episodes_in_train_and_eval_folders(tmp_path: Path) -> None:
    episode_file = next((TORCH_DIR / "episodes").glob("*.npz"))
    for split in ("train_eps", "eval_eps"):
        (tmp_path / split).mkdir()
        shutil.copy(episode_file, tmp_path / split)
    fmt = detect_format(tmp_path)
    assert fmt.name == "dreamerv3-torch"
    refs = fmt.list(tmp_path)
    assert [r.key.split(":")[1].split("/")[0] for r in refs] == ["train_eps", "eval_eps"]
    episode = fmt.load(refs[0])
    with np.load(episode_file) as raw:
        assert np.array_equal(episode.image, raw["image"])
        assert np.array_equal(episode.action[1:], raw["action"][1:])  # already canonical
    assert episode.length == 40 and not episode.action[0].any()
    assert episode.is_first[0] and episode.is_last[-1] and not episode.is_terminal.any()
    assert np.array_equal(fmt.frame(refs[1], 39), episode.image[39])


def test_formats_do_not_claim_each_others_folders(tmp_path: Path) -> None:
    native = tmp_path / "native"
    native.mkdir()
    (native / "world.json").write_text("{}")
    shutil.copy(next((TORCH_DIR / "episodes").glob("*.npz")), native)
    assert not get_format("dreamerv3-torch").detect(native)
    assert not get_format("dreamerv3-chunks").detect(TORCH_DIR / "episodes")
    assert not get_format("dreamerv3-torch").detect(OFFICIAL_DIR)
