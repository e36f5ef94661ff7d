"""Ground truth from the replay files: counts, slip reappearance windows, and the cache that
reads each episode's truth arrays once, without its frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from beliefscope.errors import BadInputError
from beliefscope.replay.base import detect_format, get_format, load_truth
from beliefscope.review.truth import GroundTruth, TruthCache
from beliefscope.store.engine import Store, open_store
from tests.builders import make_world


def test_counts_spans_and_slip_windows() -> None:
    occluded = np.zeros(30, bool)
    occluded[3:8] = occluded[12:15] = occluded[20:22] = True  # three hidden stretches
    slip = np.zeros(30, bool)
    slip[13] = True  # kicked while hidden: the reappearance at 15 is a slip reappearance
    truth = GroundTruth(occluded, slip)
    assert truth.occlusions == 3 and truth.slips == 1
    assert truth.occluded_spans() == [(3, 7), (12, 14), (20, 21)]
    assert [(e.t, e.slip) for e in truth.reappearances] == [(8, False), (15, True), (22, False)]
    assert truth.slip_windows() == [(14, 19)]
    assert truth.at_slip(18, 25) and not truth.at_slip(8, 12)
    assert truth.slips_found([(0, 2), (19, 19)]) == 1 and truth.slips_found([(8, 9)]) == 0


def test_the_cache_reads_truth_once_per_episode_file(tmp_path: Path, sqlite_url: str) -> None:
    world = make_world(tmp_path / "world", episodes=2, length=40)
    refs = detect_format(world).list(world)
    full = get_format(refs[0].format).load(refs[0])
    alone = load_truth(refs[0])
    assert set(alone) == set(full.truth)
    assert all(np.array_equal(alone[k], full.truth[k]) for k in alone)
    store: Store = open_store(sqlite_url)
    try:
        run = store.writer.ensure_run("r", logdir=str(tmp_path))
        ids = [
            store.writer.ensure_episode(
                run,
                key=ref.key,
                format=ref.format,
                source_path=str(ref.path),
                length=ref.length,
                has_truth=True,
            )
            for ref in refs
        ]
        cache = TruthCache(store)
        first = cache.get(ids[0])
        assert first is not None and np.array_equal(first.occluded, full.truth["occluded"])
        assert first.visible_frac is not None and first.visible_frac.shape == (40,)
        refs[0].path.unlink()  # kept: the file is not read again
        assert cache.get(ids[0]) is first
        lonely = TruthCache(store)
        facts = lonely.facts([store.queries.get_episode(episode_id=i) for i in ids])
        assert set(facts) == {ids[1]}  # the unreadable episode is left out of a list...
        with pytest.raises(BadInputError, match="cannot read ground truth"):
            lonely.get(ids[0])  # ... and named where it is shown alone
    finally:
        store.close()
