"""Figure builders: valid Plotly figures that keep spikes, NaN/inf, flags, threshold and cursor."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import pytest

from beliefscope.values.traces import Series
from dashboard import figures as F


@dataclass(frozen=True)
class Flag:
    id: int
    t0: int
    t1: int
    state: str


def decode(spec: dict) -> np.ndarray:
    arr = np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.dtype(spec["dtype"]))
    if "shape" in spec:
        arr = arr.reshape([int(x) for x in spec["shape"].split(",")])
    return arr


def series(n: int = 200, seed: int = 0) -> dict[str, Series]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return {m: Series(t, rng.random(n)) for m in F.EPISODE_METRICS}


def test_typed_arrays_round_trip_and_keep_nan() -> None:
    values = np.array([1.5, np.nan, -2.0, np.inf])
    spec = F.typed(F.finite(values))
    back = decode(spec)
    assert back[0] == 1.5 and np.isnan(back[1]) and back[2] == -2.0
    assert np.isnan(back[3]), "inf cannot be placed on an axis: it becomes a gap plus a marker"
    grid = F.typed(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert grid["shape"] == "2, 3" and decode(grid).shape == (2, 3)


def test_episode_figure_is_valid_and_linked_on_one_x_axis() -> None:
    data = series()
    groups = (np.arange(200), np.random.default_rng(1).random((200, 8)))
    fig = F.episode_figure(data, length=200, kl_groups=groups, cursor=17)
    go.Figure(fig)  # raises on any invalid property
    assert {trace["xaxis"] for trace in fig["data"]} == {"x"}
    y_axes = {trace["yaxis"] for trace in fig["data"]}
    assert len(y_axes) == len(F.EPISODE_PANELS) + 1  # one per panel plus the heat map
    heat = next(t for t in fig["data"] if t["type"] == "heatmap")
    assert decode(heat["z"]).shape == (8, 200)  # groups on y, steps on x
    cursor = [s for s in fig["layout"]["shapes"] if s.get("name") == F.CURSOR]
    assert len(cursor) == 1 and cursor[0]["x0"] == 17 and cursor[0]["xref"] == "x"
    assert cursor[0]["yref"] == "paper" and cursor[0]["visible"]


def test_panels_without_metrics_are_left_out() -> None:
    data = {m: s for m, s in series().items() if m in ("kl", "correction")}
    fig = F.episode_figure(data, length=200)
    titles = [v["title"]["text"] for k, v in fig["layout"].items() if k.startswith("yaxis")]
    assert titles == ["KL", "correction"]


def test_flag_bands_colored_by_review_state_and_selected_outlined() -> None:
    flags = [Flag(1, 10, 20, "open"), Flag(2, 40, 45, "confirmed"), Flag(3, 60, 61, "dismissed")]
    fig = F.episode_figure(series(), length=200, bands=flags, selected_flag=2)
    bands = {s["name"]: s for s in fig["layout"]["shapes"] if s["name"].startswith("flag-")}
    assert bands["flag-1"]["fillcolor"] == F.STATE_COLOR["open"]
    assert bands["flag-2"]["fillcolor"] == F.STATE_COLOR["confirmed"]
    assert bands["flag-3"]["fillcolor"] == F.STATE_COLOR["dismissed"]
    assert bands["flag-1"]["x0"] == 9.5 and bands["flag-1"]["x1"] == 20.5  # whole steps covered
    assert bands["flag-2"]["line"]["width"] > 0 and bands["flag-1"]["line"]["width"] == 0


def test_threshold_line_sits_in_the_panel_of_its_metric() -> None:
    fig = F.episode_figure(series(), length=200, threshold=("correction", 0.75))
    line = next(s for s in fig["layout"]["shapes"] if s["name"] == "threshold")
    correction = next(t for t in fig["data"] if t["name"] == "correction")
    assert line["yref"] == correction["yaxis"] and line["y0"] == line["y1"] == 0.75
    assert any("0.75" in a["text"] for a in fig["layout"]["annotations"])
    absent = F.episode_figure(series(), length=200, threshold=("deter_norm", 1.0))
    assert not [s for s in absent["layout"]["shapes"] if s["name"] == "threshold"]


def test_nonfinite_values_get_named_markers() -> None:
    data = series(50)
    values = data["kl"].values.copy()
    values[[3, 7, 9]] = [np.nan, np.inf, -np.inf]
    data["kl"] = Series(data["kl"].t, values)
    fig = F.episode_figure(data, length=50)
    marks = next(t for t in fig["data"] if t["name"] == "KL non-finite")
    assert list(decode(marks["x"])) == [3, 7, 9]
    assert marks["text"] == ["NaN", "inf", "-inf"]
    line = next(t for t in fig["data"] if t["name"] == "KL")
    assert np.isnan(decode(line["y"])[[3, 7, 9]]).all()


def test_compare_figure_difference_and_flags_only_in_one() -> None:
    t = np.arange(100)
    a = {"kl": Series(t, np.ones(100)), "correction": Series(t, np.zeros(100))}
    b = {"kl": Series(t, np.full(100, 3.0)), "correction": Series(t, np.ones(100))}
    fig = F.compare_figure(
        a,
        b,
        label_a="a",
        label_b="b",
        length=100,
        bands_a=[Flag(1, 5, 9, "open")],
        bands_b=[Flag(2, 5, 8, "open"), Flag(3, 50, 55, "open")],
        only_b={3},
        cursor=4,
    )
    go.Figure(fig)
    diff = next(tr for tr in fig["data"] if tr["name"].startswith("Δ KL"))
    assert np.allclose(decode(diff["y"]), 2.0)
    lanes = {s["name"]: s for s in fig["layout"]["shapes"] if s["name"].startswith("flag-")}
    assert lanes["flag-3"]["fillcolor"] == F.B_COLOR  # found only by B: filled
    assert lanes["flag-2"]["fillcolor"] == "white" and lanes["flag-1"]["fillcolor"] == "white"
    assert lanes["flag-1"]["y0"] > lanes["flag-2"]["y0"]  # A's lane above B's


def test_difference_interpolates_when_downsampled_differently() -> None:
    a = Series(np.array([0, 10, 20]), np.array([0.0, 0.0, 0.0]))
    b = Series(np.array([0, 20]), np.array([0.0, 4.0]))
    assert list(F.difference(a, b).values) == [0.0, 2.0, 4.0]


def test_timeline_preview_and_empty_figures_are_valid() -> None:
    fig = F.timeline_figure(
        [100, 200, 300],
        {"KL": {"mean": [1.0, None, 2.0]}, "scores": {"recall": [0.5, 0.7, 0.9]}},
        findings=[(300, "rising trend")],
    )
    go.Figure(fig)
    assert fig["data"][0]["y"] == [1.0, None, 2.0]
    assert fig["layout"]["annotations"][0]["text"] == "rising trend"
    go.Figure(F.preview_figure(["a", "b"], [1, 2], [3, 0]))
    go.Figure(F.empty_figure("nothing"))
    assert F.timeline_figure([], {})["layout"]["annotations"][0]["text"]


@pytest.mark.parametrize("n", [1_000, 10_000])
def test_episode_figure_is_fast(n: int) -> None:
    import time

    data = series(n)
    start = time.perf_counter()
    F.episode_figure(data, length=n, kl_groups=(np.arange(n)[:500], np.ones((500, 32))))
    assert time.perf_counter() - start < 0.25


def test_memory_figure_draws_one_panel_per_checkpoint_with_its_baselines() -> None:
    from dashboard.figures import memory_figure

    summary = {
        "since_occlusion": [1, 2, 3],
        "plain_error": [0.02, 0.03, None],
        "slip_error": [0.05, 0.07, 0.08],
        "last_seen_slip_error": [0.09, 0.09, 0.09],
        "visible_error": 0.013,
        "mean_baseline_error": 0.09,
    }
    fig = memory_figure([("step 500", summary), ("step 2,000", summary)])
    plain = [d for d in fig["data"] if d["name"] == "plain occlusion"]
    assert [d["xaxis"] for d in plain] == ["x", "x2"] and plain[0]["y"] == [2.0, 3.0, None]
    assert sum(d["showlegend"] for d in fig["data"]) == 5  # each series named once
    assert {a["text"] for a in fig["layout"]["annotations"]} == {"step 500", "step 2,000"}
    baseline = next(d for d in fig["data"] if d["name"] == "training mean")
    assert baseline["y"] == [9.0, 9.0]
    assert "no belief probe" in memory_figure([])["layout"]["annotations"][0]["text"]
