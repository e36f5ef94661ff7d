"""The frame player: overlay frames from the API under one step cursor shared with plots.

Scrubbing never waits on the server's Python: `assets/player.js` owns the step. Every seek
(slider, keyboard, play, a click or hover on a linked plot) goes through the slider's `value`,
and one clientside callback turns a value into the frame URLs, the step label and the cursor
shape of every linked graph (`Plotly.relayout`). The server only hears about the step through
the `<prefix>-t` store, and about zoom through `<prefix>-zoom` (relayouts that only move the
cursor are filtered out in the browser).

Ids are `<prefix>-player`, `-slider`, `-t`, `-zoom`, `-bound`; frames are `img.bs-frame` with a
`data-src` URL template holding `{t}`.
"""

from __future__ import annotations

from collections.abc import Sequence

from dash import ClientsideFunction, Input, Output, clientside_callback, dcc, html

from dashboard.ui import data_attrs


def frame_player(
    prefix: str,
    *,
    sources: Sequence[tuple[str, str]],
    length: int,
    t: int,
    graphs: Sequence[str] = (),
) -> html.Div:
    """A player over `length` steps starting at `t`; `sources` are (caption, URL template) of
    the frames shown side by side; `graphs` are the ids of the dcc.Graphs whose cursor follows."""
    last = max(length - 1, 0)
    t = min(max(t, 0), last)
    frames = [
        html.Figure(
            [
                html.Img(
                    className="bs-frame",
                    src=template.replace("{t}", str(t)),
                    alt=f"{caption} frame",
                    **data_attrs(src=template),
                ),
                html.Figcaption(caption) if caption else None,
            ],
            className="bs-frame-box",
        )
        for caption, template in sources
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
                dcc.Slider(
                    id=f"{prefix}-slider",
                    min=0,
                    max=last,
                    step=1,
                    value=t,
                    marks=None,
                    updatemode="drag",
                    allow_direct_input=False,
                    tooltip=None,
                    className="bs-slider",
                ),
                className="bs-slider-box",
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
            html.Div(frames, className="bs-frames"),
            controls,
            dcc.Store(id=f"{prefix}-t", data=t),
            dcc.Store(id=f"{prefix}-zoom"),
            dcc.Store(id=f"{prefix}-bound"),
        ],
        id=f"{prefix}-player",
        className="bs-player",
        tabIndex="0",
        **data_attrs(prefix=prefix, length=str(length), graphs=",".join(graphs), t=str(t)),
    )


def register(prefix: str, graphs: Sequence[str]) -> None:
    """Clientside wiring of one page's player (call once at the page module's import)."""
    clientside_callback(
        ClientsideFunction("bsPlayer", "show"),
        Output(f"{prefix}-t", "data"),
        Input(f"{prefix}-slider", "value"),
        Input(f"{prefix}-player", "id"),
    )
    for graph in graphs:
        clientside_callback(
            ClientsideFunction("bsPlayer", "fromGraph"),
            Output(f"{prefix}-slider", "value", allow_duplicate=True),
            Input(graph, "clickData"),
            Input(graph, "hoverData"),
            Input(f"{prefix}-player", "id"),
            prevent_initial_call=True,
        )
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
