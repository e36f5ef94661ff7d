"""Figure builders: valid Plotly figures that keep spikes, NaN/inf, flags, threshold, the
ground-truth lane and a legend entry for every trace."""

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
    fig = F.episode_figure(data, length=200, kl_groups=groups)
    go.Figure(fig)  # raises on any invalid property
    assert {trace["xaxis"] for trace in fig["data"]} == {"x"}
    y_axes = {trace["yaxis"] for trace in fig["data"]}
    assert len(y_axes) == len(F.EPISODE_PANELS) + 1  # one per panel plus the heat map
    heat = next(t for t in fig["data"] if t["type"] == "heatmap")
    assert decode(heat["z"]).shape == (8, 200)  # groups on y, steps on x
    assert not fig["layout"]["shapes"]  # the cursor is the player's, not a shape to redraw


def test_truth_lane_sits_under_the_plots_on_the_same_x_axis() -> None:
    lane = F.TruthLane(
        occluded=[(10, 14), (40, 41)],
        slips=np.array([12]),
        visible=Series(np.arange(200), np.linspace(0, 1, 200)),
    )
    fig = F.episode_figure(series(), length=200, truth=lane)
    go.Figure(fig)
    named = {t["name"]: t for t in fig["data"]}
    hidden, kick = named["occluded (ground truth)"], named["slip kick"]
    visible = named["box visible fraction"]
    last = f"y{len(F.EPISODE_PANELS) + 1}"
    assert hidden["yaxis"] == kick["yaxis"] == visible["yaxis"] == last
    assert hidden["x"][:4] == [9.5, 9.5, 14.5, 14.5] and hidden["fill"] == "toself"
    assert list(decode(kick["x"])) == [12]
    quiet = F.episode_figure(series(), length=200, truth=F.TruthLane([], np.array([], int)))
    assert not {"occluded (ground truth)", "slip kick"} & {t["name"] for t in quiet["data"]}


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
    values = data["correction"].values.copy()
    values[0] = np.nan
    data["correction"] = Series(data["correction"].t, values)
    fig = F.episode_figure(data, length=50)
    marks = [t for t in fig["data"] if t.get("legendgroup") == "nonfinite"]
    assert [m["meta"] for m in marks] == ["KL", "correction"]
    assert list(decode(marks[0]["x"])) == [3, 7, 9]
    assert marks[0]["text"] == ["NaN", "inf", "-inf"]
    # one legend entry says what the markers are
    assert [m["showlegend"] for m in marks] == [True, False] and marks[0]["name"] == F.NONFINITE
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
        {
            "KL": {"mean": [1.0, None, 2.0]},
            "scores": {"recall": [0.5, 0.7, 0.9]},
            "flags / trace": {"flags / trace": [1.0, 2.0, 3.0]},
        },
        findings=[(2, "rising trend")],
    )
    go.Figure(fig)
    assert fig["data"][0]["y"] == [1.0, None, 2.0]
    assert [d["name"] for d in fig["data"]] == ["KL · mean", "scores · recall", "flags / trace"]
    assert len({d["line"]["color"] for d in fig["data"]}) == 3  # no two entries look alike
    assert fig["layout"]["annotations"][0]["text"] == "rising trend"
    assert fig["layout"]["annotations"][0]["x"] == 300
    assert fig["layout"]["legend"]["orientation"] == "v"  # beside, not under the labels
    preview = F.preview_figure(
        [("pretrained-tiny", "step 500"), ("live", "step 50")], [1, 2], [3, 0]
    )
    go.Figure(preview)
    assert preview["layout"]["xaxis"]["type"] == "multicategory"  # run and step, none cut
    go.Figure(F.empty_figure("nothing"))
    assert F.timeline_figure([], {})["layout"]["annotations"][0]["text"]


def test_a_single_or_unknown_step_checkpoint_is_drawn_on_its_label() -> None:
    lone = F.timeline_figure([None], {"KL": {"mean": [1.5]}}, labels=["ckpt 15df71a"])
    go.Figure(lone)
    assert lone["data"][0]["x"] == ["ckpt 15df71a"] and lone["data"][0]["mode"] == "markers"
    assert lone["layout"]["xaxis"]["type"] == "category"
    one = F.timeline_figure([2000], {"KL": {"mean": [1.5]}})
    assert one["data"][0]["x"] == ["step 2,000"]


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
