"""Ground truth of recorded episodes, read from their replay files and kept per episode.

Ground truth (`occluded`, `slip`, `visible_frac`) lives in the replay files, not in the store:
each episode's truth arrays are read once (without its frames, where the format can) and kept
in a bounded cache, so scoring, the episode page's truth lane and the lists that filter by
"flag at a slip reappearance" read a file once per process, not once per view.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from beliefscope.errors import BadInputError, BeliefscopeError
from beliefscope.replay.base import EpisodeRef, load_truth
from beliefscope.review.scoring import WINDOW, Reappearance, reappearances
from beliefscope.values.traces import EpisodeInfo

if TYPE_CHECKING:
    from beliefscope.store.engine import Store

CACHED_EPISODES = 4096
"""Episodes whose truth a cache keeps (a 10,000-step episode's arrays take ~60 KB)."""


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """One episode's ground truth, time-major."""

    occluded: np.ndarray  # (T,) bool: the object is hidden from the camera
    slip: np.ndarray  # (T,) bool: the object was kicked on the way to this step
    visible_frac: np.ndarray | None = None  # (T,) float in [0, 1], where recorded
    has_state: bool = False
    """The simulator state (`qpos`) is saved too: any step can be re-rendered."""

    @cached_property
    def reappearances(self) -> tuple[Reappearance, ...]:
        return tuple(reappearances(self.occluded, self.slip))

    @property
    def occlusions(self) -> int:
        """Hidden stretches (runs of occluded steps)."""
        occ = self.occluded
        return int((occ[1:] & ~occ[:-1]).sum() + bool(occ[0])) if len(occ) else 0

    @property
    def slips(self) -> int:
        """Slip kicks (steps where the object was pushed)."""
        return int(self.slip.sum())

    def occluded_spans(self) -> list[tuple[int, int]]:
        """(first, last) step of each hidden stretch."""
        padded = np.concatenate(([False], self.occluded, [False])).astype(np.int8)
        edges = np.diff(padded)
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        return [(int(a), int(b) - 1) for a, b in zip(starts, ends, strict=True)]

    def slip_windows(self) -> list[tuple[int, int]]:
        """Steps around each slip reappearance where a flag counts as finding it (scoring's
        window)."""
        lo, hi = WINDOW
        return [(e.t + lo, e.t + hi) for e in self.reappearances if e.slip]

    def at_slip(self, t0: int, t1: int) -> bool:
        """Whether steps t0..t1 overlap a slip reappearance's window."""
        return any(t0 <= hi and t1 >= lo for lo, hi in self.slip_windows())

    def slips_found(self, spans: Iterable[tuple[int, int]]) -> int:
        """Slip reappearances that at least one of the spans (t0, t1) overlaps."""
        spans = list(spans)
        return sum(any(t0 <= hi and t1 >= lo for t0, t1 in spans) for lo, hi in self.slip_windows())


@dataclass(frozen=True)
class TruthFacts:
    """What a list shows of an episode's ground truth (under one checkpoint's flags)."""

    occlusions: int
    slips: int
    slip_reappearances: int
    slips_flagged: int
    """Slip reappearances a flag of the checkpoint overlaps."""


@dataclass(frozen=True)
class FlagTruth:
    """What the review queue shows of a flag's ground truth."""

    occlusions: int  # of its episode
    slips: int  # of its episode
    at_slip: bool
    """The flag overlaps a slip reappearance's window (it found a slip, as scoring counts)."""


def read_truth(info: EpisodeInfo) -> GroundTruth | None:
    """An episode's ground truth from its replay file (None when it records no occlusions)."""
    try:
        truth = load_truth(EpisodeRef.stored(info))
    except (OSError, BeliefscopeError) as err:
        raise BadInputError(f"cannot read ground truth of episode {info.key}: {err}") from None
    if "occluded" not in truth:
        return None
    occluded = np.asarray(truth["occluded"], bool)
    slip = np.asarray(truth.get("slip", np.zeros(len(occluded))), bool)
    visible = truth.get("visible_frac")
    frac = None if visible is None else np.asarray(visible, np.float32)
    return GroundTruth(occluded, slip, frac, has_state="qpos" in truth)


class TruthCache:
    """Episode -> ground truth, read on first use, the least recently used dropped first.
    Keyed by the episode's id, file and fingerprint, so a re-ingested file is read again."""

    def __init__(self, store: Store | None = None, capacity: int = CACHED_EPISODES) -> None:
        self._store = store
        self._capacity = capacity
        self._items: OrderedDict[tuple, GroundTruth | None] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, info: EpisodeInfo) -> GroundTruth | None:
        if not info.has_truth:
            return None
        key = (info.id, info.source_path, info.fingerprint)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        found = read_truth(info)
        with self._lock:
            self._items[key] = found
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return found

    def get(self, episode_id: int) -> GroundTruth | None:
        """By id, through the store the cache was made with."""
        assert self._store is not None, "TruthCache.get needs the store (TruthCache(store))"
        return self.of(self._store.queries.get_episode(episode_id=episode_id))

    def facts(
        self, episodes: Sequence[EpisodeInfo], flags: Iterable[tuple[int, int, int]] = ()
    ) -> dict[int, TruthFacts]:
        """Episode id -> what a list shows, for the episodes whose truth can be read; `flags`
        are (episode id, t0, t1) of one checkpoint. An unreadable file leaves its episode out
        (the episode page says why)."""
        spans: dict[int, list[tuple[int, int]]] = {}
        for episode_id, t0, t1 in flags:
            spans.setdefault(episode_id, []).append((t0, t1))
        out = {}
        for info in episodes:
            try:
                truth = self.of(info)
            except BadInputError:
                continue
            if truth is None:
                continue
            slip_events = sum(e.slip for e in truth.reappearances)
            out[info.id] = TruthFacts(
                truth.occlusions,
                truth.slips,
                slip_events,
                truth.slips_found(spans.get(info.id, ())),
            )
        return out
