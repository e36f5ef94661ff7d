"""Pure Plotly figure builders: arrays in, figure dicts out (no store, no Dash, no request).

Figures are plain dicts in Plotly's JSON schema with numpy columns as typed-array specs
(`{"dtype", "bdata"}`): building a 7-panel episode figure through `plotly.graph_objects`
costs ~0.4 s of validation, the dict costs milliseconds, and the bytes on the wire are binary.
Tests validate every builder's output with `go.Figure(fig)`.

Stacked figures put every panel on ONE x axis (`x`) with a y axis per panel, so zoom is shared
by construction. The step cursor is not part of a figure: `assets/player.js` draws it as an
element over the plot and moves only that when the player scrubs (a `Plotly.relayout` redraws
every shape of every panel). Non-finite values are never dropped silently: the line breaks
there and an `x` marker at the top of the panel names the value (NaN, inf, -inf). Every mark
has a legend entry: traces in Plotly's legend, shapes (flag bands, threshold) in the page's.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from beliefscope.values.traces import Series

Figure = dict[str, Any]

FONT = "Inter, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
INK, MUTED, GRID, AXIS = "#1f2328", "#6e7781", "#eef1f4", "#d0d7de"

METRIC_STYLE: dict[str, tuple[str, str, str]] = {
    # metric -> (label, color, dash)
    "kl": ("KL", "#1f6feb", "solid"),
    "kl_dyn": ("KL dyn", "#54aeff", "dot"),
    "kl_rep": ("KL rep", "#0550ae", "dot"),
    "correction": ("correction", "#bc4c00", "solid"),
    "prior_entropy": ("prior H", "#8250df", "solid"),
    "post_entropy": ("posterior H", "#1b7c83", "solid"),
    "recon_error": ("recon error", "#1a7f37", "solid"),
    "pred_error": ("prediction error", "#cf222e", "solid"),
    "reward": ("reward", "#24292f", "solid"),
    "reward_pred": ("reward pred", "#8c959f", "dash"),
    "cont": ("cont", "#9a6700", "solid"),
    "cont_pred": ("cont pred", "#d4a72c", "dash"),
    "deter_norm": ("|h|", "#57606a", "solid"),
    "deter_delta": ("|Δh|", "#953800", "solid"),
    "openloop_error": ("open-loop error", "#6639ba", "solid"),
    "reward_error": ("reward surprise", "#0a3069", "solid"),
}

STATE_COLOR: dict[str, str] = {
    "open": "#d4a72c",
    "confirmed": "#cf222e",
    "dismissed": "#8c959f",
}
"""Flag band color per review state (the frame overlay's border uses the same meaning)."""

TRUTH_COLOR = {"occluded": "rgba(110,119,129,0.45)", "slip": "#cf222e", "visible": "#1a7f37"}
"""Ground-truth lane: hidden spans, slip kicks, the box's visible fraction."""
NONFINITE = "NaN / inf (no value)"
"""Legend entry of the markers that name non-finite values."""

A_COLOR, B_COLOR = "#1f6feb", "#bc4c00"
LANE_RANGE = (-0.1, 2.1)
"""y range of the compare figure's flag lanes: B's lane is 0..1, A's 1..2."""


@dataclass(frozen=True)
class Panel:
    """One row of the stacked episode plot: a title and the metrics drawn in it."""

    title: str
    metrics: tuple[str, ...]


EPISODE_PANELS: tuple[Panel, ...] = (
    Panel("KL", ("kl",)),
    Panel("correction", ("correction",)),
    Panel("belief jump (m)", ("belief_jump",)),  # decode traces only
    Panel("entropy", ("prior_entropy", "post_entropy")),
    Panel("error", ("recon_error", "pred_error")),
    Panel("reward · cont", ("reward", "reward_pred", "cont", "cont_pred")),
    Panel("reward surprise", ("reward_error",)),
    Panel("open-loop", ("openloop_error",)),
)
"""Rows of the episode page; the per-group KL heat map goes right under KL."""

EPISODE_METRICS: tuple[str, ...] = tuple(m for p in EPISODE_PANELS for m in p.metrics)


@dataclass(frozen=True, eq=False)
class TruthLane:
    """What the ground-truth lane draws: hidden stretches (first, last step), the steps of
    slip kicks, and the box's visible fraction (possibly downsampled)."""

    occluded: Sequence[tuple[int, int]]
    slips: np.ndarray  # (k,) steps
    visible: Series | None = None


class Band(Protocol):
    """A flagged segment: anything with these attributes (review flags, rule previews)."""

    @property
    def t0(self) -> int: ...
    @property
    def t1(self) -> int: ...
    @property
    def state(self) -> str: ...


def typed(values: np.ndarray, dtype: str = "f4") -> dict[str, str]:
    """A numpy column as Plotly's typed-array spec (NaN stays NaN: a gap in the line)."""
    arr = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    spec = {"dtype": dtype, "bdata": base64.b64encode(arr.tobytes()).decode("ascii")}
    if arr.ndim == 2:
        spec["shape"] = f"{arr.shape[0]}, {arr.shape[1]}"
    return spec


def finite(values: np.ndarray) -> np.ndarray:
    """float64 copy where +/-inf become NaN (Plotly cannot place them; they get markers)."""
    v = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(v), v, np.nan)


def nonfinite_points(series: Series) -> tuple[np.ndarray, list[str]]:
    """Steps whose value is NaN or +/-inf, with the value's name for the hover."""
    v = np.asarray(series.values, dtype=np.float64)
    bad = ~np.isfinite(v)
    names = ["NaN" if np.isnan(x) else ("inf" if x > 0 else "-inf") for x in v[bad]]
    return np.asarray(series.t)[bad], names


def _ax(i: int) -> str:
    """Trace-side axis reference of row i (1-based): y, y2, y3..."""
    return "y" if i == 1 else f"y{i}"


def _axis_key(i: int) -> str:
    return "yaxis" if i == 1 else f"yaxis{i}"


def _axis_style() -> dict[str, Any]:
    return {
        "showgrid": True,
        "gridcolor": GRID,
        "zeroline": False,
        "linecolor": AXIS,
        "showline": True,
        "ticks": "outside",
        "ticklen": 3,
        "tickcolor": AXIS,
        "automargin": False,
    }


def _layout(height: int, **extra: Any) -> dict[str, Any]:
    return {
        "height": height,
        "margin": {"l": 64, "r": 14, "t": 22, "b": 30},
        "font": {"family": FONT, "size": 11, "color": INK},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "hovermode": "x unified",
        "hoverlabel": {"font": {"family": FONT, "size": 11}, "bgcolor": "rgba(255,255,255,0.95)"},
        "hoverdistance": -1,
        "showlegend": True,
        "legend": {
            "orientation": "h",
            "yanchor": "bottom",
            "y": 1.0,
            "x": 0,
            "font": {"size": 10},
            "bgcolor": "rgba(255,255,255,0)",
        },
        "dragmode": "zoom",
        "uirevision": "keep",
        **extra,
    }


def _stack(heights: Sequence[float], titles: Sequence[str], gap: float) -> dict[str, Any]:
    """Y axes for rows stacked top-down (domains proportional to `heights`) under one x axis."""
    total = sum(heights)
    usable = 1.0 - gap * (len(heights) - 1)
    axes: dict[str, Any] = {}
    top = 1.0
    for i, (h, title) in enumerate(zip(heights, titles, strict=True), start=1):
        bottom = max(top - usable * h / total, 0.0)
        axes[_axis_key(i)] = {
            **_axis_style(),
            "domain": [bottom, top],
            "anchor": "x",
            "nticks": 4,
            "title": {"text": title, "font": {"size": 10, "color": MUTED}, "standoff": 4},
        }
        top = bottom - gap
    axes["xaxis"] = {
        **_axis_style(),
        "anchor": "free",  # at the bottom of the figure, not tied to the last row's layout
        "position": 0,
        "domain": [0, 1],
        "title": {"text": "step", "font": {"size": 10, "color": MUTED}, "standoff": 2},
        "showspikes": True,
        "spikemode": "across",
        "spikesnap": "cursor",
        "spikethickness": 1,
        "spikecolor": "#8c959f",
        "spikedash": "solid",
    }
    return axes


def _line(name: str, series: Series, row: int, **style: Any) -> dict[str, Any]:
    label, color, dash = METRIC_STYLE.get(name, (name, INK, "solid"))
    return {
        "type": "scatter",
        "mode": "lines",
        "x": typed(np.asarray(series.t), "i4"),
        "y": typed(finite(series.values)),
        "xaxis": "x",
        "yaxis": _ax(row),
        "name": style.pop("label", label),
        "line": {"color": style.pop("color", color), "width": 1.3, "dash": dash},
        "connectgaps": False,
        "hovertemplate": "%{y:.4g}",
        **style,
    }


def _nonfinite_marks(
    name: str, series: Series, row: int, y_top: float, *, legend: bool = False
) -> dict[str, Any] | None:
    t, names = nonfinite_points(series)
    if not len(t):
        return None
    label = METRIC_STYLE.get(name, (name, INK, ""))[0]
    return {
        "type": "scatter",
        "mode": "markers",
        "x": typed(t, "i4"),
        "y": typed(np.full(len(t), y_top)),
        "xaxis": "x",
        "yaxis": _ax(row),
        "marker": {"symbol": "x-thin", "size": 7, "line": {"width": 1.5, "color": "#cf222e"}},
        "name": NONFINITE if legend else f"{label} non-finite",
        "meta": label,
        "text": names,
        "hovertemplate": f"{label}: %{{text}}<extra></extra>",
        "legendgroup": "nonfinite",
        "showlegend": legend,
    }


def _finite_max(series: Iterable[Series]) -> float:
    tops = [
        float(np.max(v[np.isfinite(v)]))
        for s in series
        if np.isfinite(v := np.asarray(s.values, dtype=np.float64)).any()
    ]
    return max(tops) if tops else 1.0


def band_shapes(bands: Iterable[Band], *, selected: int | None = None) -> list[dict[str, Any]]:
    """Flag segments as shaded full-height bands below the data, colored by review state;
    the `selected` flag (by id) gets a stronger fill and an outline."""
    shapes = []
    for band in bands:
        color = STATE_COLOR.get(band.state, STATE_COLOR["open"])
        outlined = selected is not None and getattr(band, "id", None) == selected
        shapes.append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": band.t0 - 0.5,
                "x1": band.t1 + 0.5,
                "y0": 0,
                "y1": 1,
                "fillcolor": color,
                "opacity": 0.32 if outlined else 0.15,
                "line": {"width": 1.5 if outlined else 0, "color": color},
                "layer": "below",
                "name": f"flag-{getattr(band, 'id', '')}",
            }
        )
    return shapes


def _full_range(length: int) -> list[float]:
    return [-0.5, max(length - 1, 0) + 0.5]


def episode_figure(
    series: Mapping[str, Series],
    *,
    length: int,
    kl_groups: tuple[np.ndarray, np.ndarray] | None = None,
    bands: Sequence[Band] = (),
    threshold: tuple[str, float] | None = None,
    truth: TruthLane | None = None,
    x_range: tuple[float, float] | None = None,
    selected_flag: int | None = None,
    row_height: int = 92,
) -> Figure:
    """The stacked, x-linked plots of one trace.

    `series` maps metric -> Series (possibly min/max downsampled); panels whose metrics are all
    missing are left out. `kl_groups` is (t (n,), values (n, G)) for the heat map. `threshold`
    is (metric, value) of the active rule, drawn as a dashed line in the panel holding it.
    `truth` adds the ground-truth lane at the bottom (hidden spans, slip kicks, visible
    fraction) on the same x axis.
    """
    rows: list[Panel | str] = []  # "heat": the heat map row, "truth": the ground-truth lane
    for panel in EPISODE_PANELS:
        if any(m in series for m in panel.metrics):
            rows.append(panel)
            if panel.metrics == ("kl",) and kl_groups is not None:
                rows.append("heat")
    if not rows:
        return empty_figure("this trace has none of the plotted metrics")
    if truth is not None:
        rows.append("truth")
    heights = [0.7 if isinstance(r, str) else 1.0 for r in rows]
    titles = [
        {"heat": "KL / group", "truth": "truth"}.get(r, "") if isinstance(r, str) else r.title
        for r in rows
    ]
    data: list[dict[str, Any]] = []
    shapes = band_shapes(bands, selected=selected_flag)
    annotations: list[dict[str, Any]] = []
    legend_nonfinite = True
    for i, row in enumerate(rows, start=1):
        if row == "heat":
            assert kl_groups is not None
            data.append(kl_group_heatmap(*kl_groups, row=i))
            continue
        if row == "truth":
            assert truth is not None
            data.extend(truth_traces(truth, row=i))
            continue
        assert isinstance(row, Panel)
        present = [m for m in row.metrics if m in series]
        top = _finite_max(series[m] for m in present)
        for m in present:
            data.append(_line(m, series[m], i))
            marks = _nonfinite_marks(m, series[m], i, top, legend=legend_nonfinite)
            if marks is not None:
                data.append(marks)
                legend_nonfinite = False
        if threshold is not None and threshold[0] in present:
            shapes.append(_threshold_line(threshold[1], i))
            annotations.append(_threshold_label(threshold[1], i))
    axes = _stack(heights, titles, gap=0.018)
    for i, row in enumerate(rows, start=1):
        if row == "heat":
            axes[_axis_key(i)].update(showgrid=False, ticks="", nticks=3)
        elif row == "truth":
            axes[_axis_key(i)].update(
                range=[-0.05, 1.25], tickvals=[0, 1], ticktext=["0", "1"], showgrid=False
            )
    axes["xaxis"]["range"] = list(x_range) if x_range else _full_range(length)
    entries = sum(1 for d in data if d.get("showlegend", True))
    top_margin = _legend_margin(entries)
    height = int(sum(heights) * row_height) + 38 + top_margin
    layout = _layout(
        height, shapes=shapes, annotations=annotations, meta={"length": length}, **axes
    )
    layout["margin"] = {**layout["margin"], "t": top_margin}
    return {"data": data, "layout": layout}


def _legend_margin(entries: int, per_row: int = 7) -> int:
    """Top margin that holds a horizontal legend of `entries` items above the plots."""
    return 8 + 19 * max(1, -(-entries // per_row))


def truth_traces(truth: TruthLane, *, row: int) -> list[dict[str, Any]]:
    """The ground-truth lane: hidden stretches as filled bars (one trace, so one legend entry),
    slip kicks as red triangles above them, the visible fraction as a thin line (0..1)."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for a, b in truth.occluded:
        xs += [a - 0.5, a - 0.5, b + 0.5, b + 0.5, None]
        ys += [0.0, 1.0, 1.0, 0.0, None]
    traces: list[dict[str, Any]] = []
    if xs:
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": xs,
                "y": ys,
                "xaxis": "x",
                "yaxis": _ax(row),
                "fill": "toself",
                "fillcolor": TRUTH_COLOR["occluded"],
                "line": {"width": 0, "color": TRUTH_COLOR["occluded"]},
                "name": "occluded (ground truth)",
                "hoverinfo": "skip",
            }
        )
    if len(truth.slips):
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": typed(np.asarray(truth.slips), "i4"),
                "y": typed(np.full(len(truth.slips), 1.12)),
                "xaxis": "x",
                "yaxis": _ax(row),
                "marker": {"symbol": "triangle-down", "size": 9, "color": TRUTH_COLOR["slip"]},
                "name": "slip kick",
                "hovertemplate": "slip kick<extra></extra>",
            }
        )
    if truth.visible is not None:
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": typed(np.asarray(truth.visible.t), "i4"),
                "y": typed(finite(truth.visible.values)),
                "xaxis": "x",
                "yaxis": _ax(row),
                "line": {"color": TRUTH_COLOR["visible"], "width": 1},
                "name": "box visible fraction",
                "hovertemplate": "visible %{y:.0%}",
            }
        )
    return traces


def _threshold_line(value: float, row: int) -> dict[str, Any]:
    return {
        "type": "line",
        "xref": "x domain",
        "yref": _ax(row),
        "x0": 0,
        "x1": 1,
        "y0": value,
        "y1": value,
        "line": {"color": "#cf222e", "width": 1, "dash": "dash"},
        "name": "threshold",
    }


def _threshold_label(value: float, row: int) -> dict[str, Any]:
    return {
        "xref": "x domain",
        "yref": _ax(row),
        "x": 1,
        "y": value,
        "xanchor": "right",
        "yanchor": "bottom",
        "text": f"threshold {value:.3g}",
        "showarrow": False,
        "font": {"size": 10, "color": "#cf222e"},
    }


def kl_group_heatmap(t: np.ndarray, values: np.ndarray, row: int) -> dict[str, Any]:
    """Per-latent-group KL (n, G) as a heat map with groups on y; NaN cells stay blank."""
    assert values.ndim == 2 and len(t) == len(values), (t.shape, values.shape)
    z = finite(values).T  # (G, n): groups on y, steps on x
    ok = z[np.isfinite(z)]
    zmax = float(np.percentile(ok, 99.5)) if ok.size else 1.0
    return {
        "type": "heatmap",
        "x": typed(np.asarray(t), "i4"),
        "z": typed(z),
        "xaxis": "x",
        "yaxis": _ax(row),
        "zmin": 0.0,
        "zmax": max(zmax, 1e-6),
        "colorscale": "Blues",
        "showscale": False,
        "name": "KL / group",
        "hovertemplate": "group %{y}: %{z:.3g}<extra></extra>",
    }


def compare_figure(
    a: Mapping[str, Series],
    b: Mapping[str, Series],
    *,
    label_a: str,
    label_b: str,
    length: int,
    bands_a: Sequence[Band] = (),
    bands_b: Sequence[Band] = (),
    only_a: Iterable[int] = (),
    only_b: Iterable[int] = (),
    x_range: tuple[float, float] | None = None,
    row_height: int = 104,
) -> Figure:
    """Two checkpoints on one episode: KL and correction overlaid, their difference (B - A),
    and a flag lane per checkpoint where flags found by only one of them are filled."""
    metrics = [m for m in ("kl", "correction") if m in a and m in b]
    if not metrics:
        return empty_figure("the two traces share no KL or correction series")
    heights = [1.0, 0.55] * len(metrics) + [0.4]
    titles = [t for m in metrics for t in (METRIC_STYLE[m][0], f"Δ {METRIC_STYLE[m][0]}")]
    titles.append("flags")
    data: list[dict[str, Any]] = []
    for k, m in enumerate(metrics):
        row = 2 * k + 1
        data.append(
            _line(
                m,
                a[m],
                row,
                label=f"A · {label_a}",
                color=A_COLOR,
                legendgroup="a",
                showlegend=k == 0,
            )
        )
        data.append(
            _line(
                m,
                b[m],
                row,
                label=f"B · {label_b}",
                color=B_COLOR,
                legendgroup="b",
                showlegend=k == 0,
            )
        )
        diff = difference(a[m], b[m])
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": typed(diff.t, "i4"),
                "y": typed(finite(diff.values)),
                "xaxis": "x",
                "yaxis": _ax(row + 1),
                "name": f"Δ {METRIC_STYLE[m][0]} (B − A)",
                "line": {"color": "#57606a", "width": 1.1},
                "fill": "tozeroy",
                "fillcolor": "rgba(87,96,106,0.15)",
                "showlegend": False,
                "hovertemplate": "Δ %{y:.4g}",
            }
        )
    lane = len(titles)
    # one transparent point keeps the lane's axis (and its A/B labels) in the figure; an empty
    # trace would draw a path with NaN coordinates
    data.append(
        {
            "type": "scatter",
            "mode": "markers",
            "x": [0],
            "y": [1.0],
            "yaxis": _ax(lane),
            "marker": {"opacity": 0},
            "hoverinfo": "skip",
            "showlegend": False,
        }
    )
    only = (set(only_a), set(only_b))
    shapes = []
    for y, bands, unique, color in ((1, bands_a, only[0], A_COLOR), (0, bands_b, only[1], B_COLOR)):
        for band in bands:
            solo = getattr(band, "id", None) in unique
            shapes.append(
                {
                    "type": "rect",
                    "xref": "x",
                    # domain coordinates: an axis without traces has no data scale yet when
                    # Plotly first draws shapes (data coordinates came out NaN)
                    "yref": f"{_ax(lane)} domain",
                    "x0": band.t0 - 0.5,
                    "x1": band.t1 + 0.5,
                    "y0": (y + 0.15 - LANE_RANGE[0]) / (LANE_RANGE[1] - LANE_RANGE[0]),
                    "y1": (y + 0.85 - LANE_RANGE[0]) / (LANE_RANGE[1] - LANE_RANGE[0]),
                    "fillcolor": color if solo else "white",
                    "line": {"color": color, "width": 1.2},
                    "name": f"flag-{getattr(band, 'id', '')}",
                }
            )
    axes = _stack(heights, titles, gap=0.02)
    axes[_axis_key(lane)].update(
        range=list(LANE_RANGE),
        tickvals=[0.5, 1.5],
        ticktext=["B", "A"],
        showgrid=False,
        title={"text": "flags", "font": {"size": 10, "color": MUTED}, "standoff": 4},
    )
    axes["xaxis"]["range"] = list(x_range) if x_range else _full_range(length)
    height = int(sum(heights) * row_height) + 60
    return {
        "data": data,
        "layout": _layout(height, shapes=shapes, meta={"length": length}, **axes),
    }


def difference(a: Series, b: Series) -> Series:
    """B - A on A's steps (B interpolated where the two were downsampled to different steps)."""
    ta, tb = np.asarray(a.t), np.asarray(b.t)
    va, vb = np.asarray(a.values, dtype=np.float64), np.asarray(b.values, dtype=np.float64)
    if np.array_equal(ta, tb):
        return Series(t=ta, values=vb - va)
    if not len(tb):
        return Series(t=ta, values=np.full(len(ta), np.nan))
    return Series(t=ta, values=np.interp(ta, tb, vb) - va)


def timeline_figure(
    steps: Sequence[int | None],
    rows: Mapping[str, Mapping[str, Sequence[float | None]]],
    *,
    labels: Sequence[str] | None = None,
    findings: Sequence[tuple[int, str]] = (),
    row_height: int = 110,
) -> Figure:
    """A run's checkpoint timeline: one row per group of summary values (e.g. {"KL": {"mean":
    [...], "p95": [...]}}), x = training step, chronic findings as labelled dotted lines
    (`findings`: (checkpoint index, text)). With one checkpoint, or a step unknown, x is the
    checkpoint's label (`labels`) instead: no axis invented around a lone point."""
    if not rows or not steps:
        return empty_figure("no ingested checkpoints yet")
    palette = ["#1f6feb", "#bc4c00", "#1a7f37", "#8250df", "#cf222e", "#57606a", "#9a6700"]
    numeric = len(steps) > 1 and all(s is not None for s in steps)
    names = (
        list(labels)
        if labels is not None
        else [f"step {s:,}" if s is not None else "?" for s in steps]
    )
    xs: list[Any] = list(steps) if numeric else names
    titles = list(rows)
    data = []
    color = 0
    for i, title in enumerate(titles, start=1):
        for name, values in rows[title].items():
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers" if len(steps) > 1 else "markers",
                    "x": xs,
                    "y": [None if v is None or not np.isfinite(v) else float(v) for v in values],
                    "xaxis": "x",
                    "yaxis": _ax(i),
                    "name": title if name == title else f"{title} · {name}",
                    "line": {"color": palette[color % len(palette)], "width": 1.5},
                    "marker": {"size": 5 if len(steps) > 1 else 9},
                    "hovertemplate": "%{y:.4g}",
                }
            )
            color += 1
    axes = _stack([1.0] * len(titles), titles, gap=0.04)
    axes["xaxis"]["title"]["text"] = "training step" if numeric else "checkpoint"
    if not numeric:
        axes["xaxis"]["type"] = "category"
    marks = [(xs[k], text) for k, text in findings if 0 <= k < len(xs)]
    shapes = [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": x,
            "x1": x,
            "y0": 0,
            "y1": 1,
            "line": {"color": "#cf222e", "width": 1, "dash": "dot"},
        }
        for x, _ in marks
    ]
    annotations = []
    stacked: dict[Any, int] = {}
    for x, text in marks:  # findings of one checkpoint stack up instead of overprinting
        level = stacked[x] = stacked.get(x, -1) + 1
        annotations.append(
            {
                "x": x,
                "y": 1.0,
                "xref": "x",
                "yref": "paper",
                "text": text,
                "showarrow": False,
                "yanchor": "bottom",
                "yshift": 13 * level,
                "font": {"size": 10, "color": "#cf222e"},
            }
        )
    layout = _layout(len(titles) * row_height + 60, shapes=shapes, annotations=annotations, **axes)
    layout["margin"] = {**layout["margin"], "t": 22 + 13 * max(stacked.values(), default=0)}
    # the legend to the right: above the plots it would sit under the findings' labels
    layout["legend"] = {
        **layout["legend"],
        "orientation": "v",
        "x": 1.01,
        "y": 1.0,
        "yanchor": "top",
    }
    layout["margin"]["r"] = 170
    return {"data": data, "layout": layout}


def memory_figure(panels: Sequence[tuple[str, Mapping[str, Any]]], height: int = 210) -> Figure:
    """Small multiples of the belief probe, one panel per checkpoint (label, `decode`
    summary): belief error vs steps since the box was hidden on plain occlusions (where the
    last visible position is exact) and on slips, beside the visible-step error and the
    training-mean baseline. A memory shows as a flat plain line near the visible one."""
    if not panels:
        return empty_figure("no belief probe yet: beliefscope probe decode RUN_DIR", height)
    n = len(panels)
    gap = 0.03
    width = (1.0 - gap * (n - 1)) / n
    top = max([float(panel.get("mean_baseline_error") or 0.0) for _, panel in panels] + [0.01])
    series = (
        ("plain_error", "plain occlusion", "#1f6feb", "solid"),
        ("slip_error", "slip", "#cf222e", "solid"),
        ("last_seen_slip_error", "last seen (slip)", "#cf222e", "dot"),
    )
    data: list[dict[str, Any]] = []
    layout = _layout(height, hovermode="closest")
    annotations = []
    for i, (label, panel) in enumerate(panels, start=1):
        x_key, y_key = ("xaxis" if i == 1 else f"xaxis{i}"), _axis_key(i)
        x_ref, y_ref = ("x" if i == 1 else f"x{i}"), _ax(i)
        since = list(panel.get("since_occlusion", []))[:12]
        for key, name, color, dash in series:
            values = [None if v is None else 100 * float(v) for v in panel.get(key, [])[:12]]
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "x": since,
                    "y": values,
                    "xaxis": x_ref,
                    "yaxis": y_ref,
                    "name": name,
                    "legendgroup": key,
                    "showlegend": i == 1,
                    "line": {"color": color, "width": 1.5, "dash": dash},
                    "marker": {"size": 4},
                    "hovertemplate": f"{label}<br>%{{x}} hidden: %{{y:.1f}} cm"
                    f"<extra>{name}</extra>",
                }
            )
        for value, name, color in (
            (panel.get("visible_error"), "visible steps", "#1a7f37"),
            (panel.get("mean_baseline_error"), "training mean", "#8c959f"),
        ):
            if value is None:
                continue
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": [1, max(since or [1])],
                    "y": [100 * float(value)] * 2,
                    "xaxis": x_ref,
                    "yaxis": y_ref,
                    "name": name,
                    "legendgroup": name,
                    "showlegend": i == 1,
                    "line": {"color": color, "width": 1, "dash": "dash"},
                    "hovertemplate": f"{name}: %{{y:.1f}} cm<extra></extra>",
                }
            )
        left = (i - 1) * (width + gap)
        layout[x_key] = {
            **_axis_style(),
            "domain": [left, left + width],
            "anchor": y_ref,
            "title": {"text": "steps hidden", "font": {"size": 10, "color": MUTED}},
        }
        layout[y_key] = {
            **_axis_style(),
            "domain": [0.0, 0.82],
            "anchor": x_ref,
            "range": [0, 100 * top * 1.15],
            "showticklabels": i == 1,
            "title": {"text": "error (cm)" if i == 1 else "", "font": {"size": 10}},
        }
        annotations.append(
            {
                "text": label,
                "x": left + width / 2,
                "y": 0.84,
                "xref": "paper",
                "yref": "paper",
                "showarrow": False,
                "yanchor": "bottom",
                "font": {"size": 11},
            }
        )
    layout["annotations"] = annotations
    layout["margin"] = {"l": 52, "r": 10, "t": 36, "b": 36}
    return {"data": data, "layout": layout}


def preview_figure(
    labels: Sequence[tuple[str, str]], current: Sequence[int], proposed: Sequence[int]
) -> Figure:
    """Flags per checkpoint under the stored rule vs the edited one (rules page preview);
    `labels` are (run, checkpoint) pairs, drawn as two levels of the x axis so no label has
    to be cut."""
    x = [[run for run, _ in labels], [ckpt for _, ckpt in labels]]
    bars = [
        {
            "type": "bar",
            "x": x,
            "y": list(current),
            "name": "current rule",
            "marker": {"color": "#8c959f"},
        },
        {
            "type": "bar",
            "x": x,
            "y": list(proposed),
            "name": "edited rule",
            "marker": {"color": "#1f6feb"},
        },
    ]
    layout = _layout(260, barmode="group", hovermode="x", bargap=0.25)
    layout["xaxis"] = {**_axis_style(), "type": "multicategory", "automargin": True}
    layout["yaxis"] = {**_axis_style(), "title": {"text": "flags", "font": {"size": 10}}}
    return {"data": bars, "layout": layout}


def empty_figure(message: str, height: int = 160) -> Figure:
    """A blank figure that says why it is blank (no trace yet, nothing selected)."""
    return {
        "data": [],
        "layout": _layout(
            height,
            xaxis={"visible": False},
            yaxis={"visible": False},
            annotations=[
                {
                    "text": message,
                    "showarrow": False,
                    "x": 0.5,
                    "y": 0.5,
                    "xref": "paper",
                    "yref": "paper",
                    "font": {"size": 12, "color": MUTED},
                }
            ],
        ),
    }
