"""Scoring against hand-computed examples."""

from __future__ import annotations

import numpy as np

from beliefscope.review.scoring import (
    EpisodeTruth,
    auc,
    average_precision,
    reappearances,
    score,
)


def truth(occ: str, slip_at=(), signal=None, flags=(), priority=0.0):
    occluded = np.array([c == "#" for c in occ])
    slip = np.zeros(len(occ), bool)
    slip[list(slip_at)] = True
    sig = np.zeros(len(occ)) if signal is None else np.asarray(signal, float)
    return EpisodeTruth(occluded, slip, sig, list(flags), priority)


def test_reappearances_need_two_hidden_steps_and_a_visible_step():
    occ = np.array([c == "#" for c in "..#...##...###..##"])
    events = reappearances(occ, None)
    # "#" at 2 is one step: no event; "##" at 6-7 -> fv 8; "###" at 11-13 -> fv 14; the trailing
    # occlusion never ends visibly: no event
    assert [(e.t, e.hidden_from) for e in events] == [(8, 6), (14, 11)]
    slip = np.zeros(len(occ), bool)
    slip[12] = True
    assert [e.slip for e in reappearances(occ, slip)] == [False, True]


def test_auc_and_average_precision_by_hand():
    assert auc([3, 2], [1, 2]) == (2 + 1 + 0.5) / 4  # pairs: 3>1, 3>2, 2>1, 2=2
    assert np.isnan(auc([], [1.0]))
    # ranking: 0.9(T) 0.8(F) 0.7(T) 0.1(F): AP = 1/2*1 + 1/2*(2/3)
    assert np.isclose(average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]), 0.5 + 1 / 3)
    # a tie between a positive and a negative enters together: precision 1/2 at recall 1
    assert np.isclose(average_precision([0.5, 0.5], [1, 0]), 0.5)


def test_score_by_hand():
    #          0123456789012345678901
    ep_a = truth(
        "...###.....##.......",
        slip_at=[4],
        signal=[0, 0, 0, 0, 0, 0, 9, 8, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0],
        flags=[(6, 7), (17, 18)],
        priority=5.0,
    )
    # ep_a: slip event fv=6 (window 5..10) found by (6,7); plain event fv=13 (12..17): the flag
    # (17,18) overlaps it at 17 -> found; both flags are right
    ep_b = truth(
        "..##......",
        slip_at=[3],
        signal=[0, 0, 0, 0, 2, 1, 0, 0, 0, 0],
        flags=[(8, 9)],
        priority=1.0,
    )
    # ep_b: slip event fv=4 (3..8): (8,9) overlaps at 8 -> found; right
    ep_c = truth("......##..", signal=[0, 0, 0, 0, 0, 0, 0, 0, 4, 0], flags=[(0, 1)], priority=2.0)
    # ep_c: plain event fv=8 (7..12): (0,1) misses -> not found and the flag is wrong
    s = score([ep_a, ep_b, ep_c])
    assert (s.slip_events, s.plain_events, s.flags, s.episodes, s.slip_episodes) == (2, 2, 4, 3, 2)
    assert s.slip_recall == 1.0
    assert s.reappearance_recall == 3 / 4
    assert s.precision == 3 / 4
    # peaks after reappearance: slip 9 (a), 2 (b); plain 3 (a), 4 (c) -> pairs 9>3 9>4 2<3 2<4
    assert s.slip_auc == 0.5
    # priorities a=5 (slip), c=2 (plain), b=1 (slip): AP = 1/2*1 + 1/2*2/3
    assert np.isclose(s.episode_ap, 0.5 + 1 / 3)
    # flags at a slip reappearance: (6,7) and (8,9); (17,18) is at a plain one, (0,1) nowhere
    assert s.slip_precision == 2 / 4
    assert s.plain_flagged == 1 / 2  # a's plain reappearance is flagged, c's is not


def test_score_without_events_or_flags_is_nan_not_a_crash():
    s = score([truth("..........")])
    assert np.isnan(s.slip_recall) and np.isnan(s.precision) and np.isnan(s.slip_auc)
    assert np.isnan(s.episode_ap)


def test_bootstrap_intervals_resample_episodes_and_bracket_the_estimate():
    rng = np.random.default_rng(0)
    episodes = []
    for i in range(40):  # a slip flagged 3 times in 4, a plain reappearance flagged 1 in 4
        slip = i % 2 == 0
        flagged = rng.random() < (0.75 if slip else 0.25)
        signal = np.zeros(12)
        signal[6] = rng.normal(2.0 if slip else 1.0, 0.5)
        episodes.append(truth("...###......", [4] if slip else [], signal, [(6, 7)] * flagged))
    s = score(episodes, resamples=400, seed=1)
    assert s.intervals["precision"] == (1.0, 1.0)  # every flag sits at a reappearance
    for name in ("slip_recall", "slip_precision", "plain_flagged", "slip_auc"):
        lo, hi = s.intervals[name]
        assert lo <= getattr(s, name) <= hi and hi - lo > 0.05, (name, lo, hi)
    assert s.intervals == score(episodes, resamples=400, seed=1).intervals  # seeded
    assert score(episodes).intervals == {}
    # with 4x the episodes the interval narrows (roughly by half)
    wide = s.intervals["slip_recall"][1] - s.intervals["slip_recall"][0]
    many = score(episodes * 4, resamples=400, seed=1).intervals["slip_recall"]
    assert many[1] - many[0] < 0.7 * wide
