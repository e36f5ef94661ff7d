"""The frame player: panels of one step under a cursor shared with the plots, scrubbed in the
browser.

`assets/player.js` owns the step. Model panels (observation, reconstruction, prediction,
error) come from one strip image per window of steps (the API's `/strip`): the browser fetches
the window around the cursor and the next one ahead of it, and a seek inside them only copies
a cell onto a canvas. Panels that need a server render per step (the ground-truth view) are
fetched one step at a time and prefetched ahead. Canvases hold the frames' own pixels and are
scaled by CSS with nearest-neighbour filtering; captions are HTML. The cursor on the plots is
an element over them, moved without a Plotly redraw.

Ids are `<prefix>-player`, `-t` (the step, for server callbacks' State), `-seek` (a server
callback asks the player to go to a step: `{"t": step}`), `-spans` (the flag spans colouring
each panel's border), `-zoom` (the visible x window, for re-reads), `-bound`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dash import ClientsideFunction, Input, Output, clientside_callback, dcc, html

from dashboard.figures import Band
from dashboard.ui import data_attrs

WINDOW = 32
"""Steps per strip: one request covers this many steps of every model panel."""


@dataclass(frozen=True)
class Panel:
    """One panel of the player. `kind` "strip": column `col` of `cols` of the strip at `src`
    (a URL template holding `{t0}` and `{n}`); "step": one image per step at `src` (holding `{t}`).
    The strip template holds `{n}` too: the player asks for a whole window (`WINDOW` steps)
    where it can, and for the one step alone on a jump, so a seek waits for one step only.
    `flags` indexes the flag spans that colour its border; `legend` is HTML under the caption."""

    caption: str
    src: str
    kind: str = "strip"
    col: int = 0
    cols: int = 1
    flags: int = 0
    title: str = ""
    legend: Any = None


def flag_spans(flags: Sequence[Band]) -> list[list[Any]]:
    """[t0, t1, state, id] of each flag, as the player reads them."""
    return [[f.t0, f.t1, f.state, getattr(f, "id", None)] for f in flags]


def frame_player(
    prefix: str,
    *,
    panels: Sequence[Panel],
    length: int,
    t: int,
    graphs: Sequence[str] = (),
    flags: Sequence[Sequence[Band]] = ((),),
    columns: int = 2,
    readout: Sequence[tuple[str, str]] = (),
) -> html.Div:
    """A player of `panels` in a grid of `columns`; `graphs` are the ids of the dcc.Graphs whose
    cursor follows; `readout` names (trace name, label) whose value at the step the caption line
    shows, read from the first graph."""
    last = max(length - 1, 0)
    t = min(max(t, 0), last)
    config = {
        "window": WINDOW,
        "length": length,
        "panels": [
            {k: v for k, v in asdict(p).items() if k in ("src", "kind", "col", "cols", "flags")}
            for p in panels
        ],
        "readout": [list(r) for r in readout],
    }
    figures = [
        html.Figure(
            [
                html.Canvas(
                    className="bs-canvas",
                    title=f"{p.title or p.caption} (click to enlarge)",
                    **data_attrs(bs_panel=str(i)),
                ),
                html.Figcaption([html.Span(p.caption, className="bs-cap"), p.legend]),
            ],
            className="bs-panel",
        )
        for i, p in enumerate(panels)
    ]
    button = lambda act, label, title: html.Button(  # noqa: E731
        label, className="bs-pbtn", title=title, **data_attrs(bs_act=act)
    )
    controls = html.Div(
        [
            button("first", "«", "first step (Home)"),
            button("prev", "‹", "previous step (←, Shift+← 10)"),
            button("play", "▶", "play / pause (Space)"),
            button("next", "›", "next step (→, Shift+→ 10)"),
            button("last", "»", "last step (End)"),
            html.Div(
                html.Div(className="bs-scrub-fill"),
                className="bs-scrub",
                title="drag to scrub",
            ),
            html.Span(f"{t}", className="bs-step", title="current step"),
            html.Span(f"/ {last}", className="bs-step-total"),
            button("speed", "1×", "playback speed"),
            button("hover", "hover", "hovering a plot scrubs the player"),
        ],
        className="bs-controls",
    )
    return html.Div(
        [
            html.Div(className="bs-readout"),
            html.Div(figures, className="bs-panels", style={"--bs-cols": str(columns)}),
            controls,
            dcc.Store(id=f"{prefix}-t", data=t),
            dcc.Store(id=f"{prefix}-seek"),
            dcc.Store(id=f"{prefix}-spans", data=[flag_spans(f) for f in flags]),
            dcc.Store(id=f"{prefix}-zoom"),
            dcc.Store(id=f"{prefix}-bound"),
        ],
        id=f"{prefix}-player",
        className="bs-player",
        tabIndex="0",
        **data_attrs(
            prefix=prefix,
            length=str(length),
            graphs=",".join(graphs),
            t=str(t),
            bs_config=json.dumps(config),
        ),
    )


def register(prefix: str, graphs: Sequence[str]) -> None:
    """Clientside wiring of one page's player (call once at the page module's import)."""
    clientside_callback(
        ClientsideFunction("bsPlayer", "init"),
        Output(f"{prefix}-bound", "data"),
        Input(f"{prefix}-player", "id"),
        Input(f"{prefix}-spans", "data"),
    )
    clientside_callback(
        ClientsideFunction("bsPlayer", "seekTo"),
        Output(f"{prefix}-bound", "data", allow_duplicate=True),
        Input(f"{prefix}-seek", "data"),
        Input(f"{prefix}-player", "id"),
        prevent_initial_call=True,
    )
    for graph in graphs:
        clientside_callback(
            ClientsideFunction("bsPlayer", "zoom"),
            Output(f"{prefix}-zoom", "data", allow_duplicate=True),
            Input(graph, "relayoutData"),
            prevent_initial_call=True,
        )
        clientside_callback(
            ClientsideFunction("bsPlayer", "bind"),
            Output(f"{prefix}-bound", "data", allow_duplicate=True),
            Input(graph, "figure"),
            Input(f"{prefix}-player", "id"),
            prevent_initial_call="initial_duplicate",
        )
