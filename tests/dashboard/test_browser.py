"""The dashboard in headless Chromium against the real app and a real store.

Each test opens a page, acts like a user and checks what the page shows (and, for writes, the
store); the `page` fixture fails a test whose console logged an error. Screenshots of each page
go to $BELIEFSCOPE_SCREENSHOTS (docs/screenshots/ for the README).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from beliefscope.store.engine import open_store
from tests.dashboard.conftest import REVIEWER, UiData

pytestmark = pytest.mark.browser

SHOTS = Path(
    os.environ.get("BELIEFSCOPE_SCREENSHOTS")
    or Path(tempfile.gettempdir()) / "beliefscope-screenshots"
)
"""Where page screenshots go; `BELIEFSCOPE_SCREENSHOTS=docs/screenshots` refreshes the README's
(a plain test run must not rewrite tracked files)."""


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def settled(page: Any, prefix: str, t: int) -> float:
    """Wait (in the page) until every frame of the player shows step t and every linked cursor
    sits at t; returns how long that took in ms."""
    return float(page.evaluate(f"window.bsPlayer.waitSettled('{prefix}', {t}, 8000)"))


def until(page: Any, expression: str, timeout_ms: int = 30_000) -> None:
    """Wait until `expression` holds in the page, polling from outside: Playwright's own
    `wait_for_function` evaluates its string inside the page, which the dashboard's
    Content-Security-Policy (no 'unsafe-eval') refuses, as it should."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(50)


def cursor_x(page: Any, graph: str) -> float:
    """The step the cursor over a graph marks, after checking it sits at that step's pixel."""
    t, left, expected = page.evaluate(
        f"""(() => {{ const host = document.getElementById('{graph}');
             const gd = host.querySelector('.js-plotly-plot');
             const line = host.querySelector('.bs-cursor');
             const xa = gd._fullLayout.xaxis, t = Number(line.dataset.t);
             const at = gd.offsetLeft + xa._offset + xa.l2p(t);
             return [t, parseFloat(line.style.left), at]; }})()"""
    )
    assert abs(left - expected) < 1.0, (left, expected)
    return float(t)


def panel_sources(page: Any, prefix: str) -> list[str]:
    """What each panel of a player shows: the strip or image URL its canvas was drawn from."""
    return page.eval_on_selector_all(
        f"#{prefix}-player canvas[data-bs-panel]", "els => els.map(e => e.dataset.src)"
    )


def trace_names(page: Any, graph: str) -> list[str]:
    return page.evaluate(
        f"document.querySelector('#{graph} .js-plotly-plot').data.map(d => d.name)"
    )


def sign_in(page: Any, token: str) -> None:
    page.fill("#bs-token", token)
    page.click("#bs-signin")
    page.wait_for_selector(f"#bs-user:has-text('{REVIEWER}')")


def episode_url(data: UiData, **query: Any) -> str:
    args = "&".join(f"{k}={v}" for k, v in {"checkpoint": data.checkpoints[1], **query}.items())
    return f"/episodes/{data.episode_id}?{args}"


def test_runs_page_lists_runs_and_the_checkpoint_timeline(page: Any, ui_data: UiData) -> None:
    answer = page.goto("/")
    csp = answer.headers["content-security-policy"]  # enforced: a violation fails the test
    assert "script-src 'self' 'sha256-" in csp and "unsafe-eval" not in csp
    assert answer.headers["x-frame-options"] == "DENY"
    page.wait_for_selector("#runs-grid .ag-row")
    assert page.locator("#runs-grid .ag-row").count() == 1
    assert "run" in page.inner_text("#runs-grid")
    page.wait_for_selector("#runs-timeline .js-plotly-plot")
    names = page.evaluate(
        "document.querySelector('#runs-timeline .js-plotly-plot').data.map(d => d.name)"
    )
    assert "KL · mean" in names and "correction · mean" in names
    page.wait_for_selector("#runs-episodes .ag-row")
    shot(page, "runs")
    page.locator("#runs-episodes .ag-row").first.locator(".ag-cell").first.click()
    page.wait_for_url("**/episodes/*")
    page.wait_for_selector("#ep-graph .js-plotly-plot")


def test_episode_scrub_keys_and_plot_click_move_frame_and_cursor(
    page: Any, ui_data: UiData
) -> None:
    page.goto(episode_url(ui_data))
    page.wait_for_selector("#ep-graph .js-plotly-plot")
    settled(page, "ep", 0)
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    settled(page, "ep", 3)
    src = panel_sources(page, "ep")[0]
    # step 3 from the window holding it, or by itself while that window is on its way
    assert re.search(rf"/episodes/{ui_data.episode_id}/strip/(0\?n=32|3\?n=1)&", src), src
    assert f"checkpoint={ui_data.checkpoints[1]}" in src
    assert page.inner_text("#ep-player .bs-step") == "3"
    assert page.inner_text("#ep-player .bs-readout").startswith("step 3 ·")
    page.keyboard.press("Shift+ArrowRight")
    settled(page, "ep", 13)
    until(page, "new URL(location.href).searchParams.get('t') === '13'")

    # a click on the KL panel at step 60 seeks the player there
    box = page.evaluate(
        """(() => { const gd = document.querySelector('#ep-graph .js-plotly-plot');
             const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
             const r = gd.getBoundingClientRect();
             return {x: r.left + xa._offset + xa.l2p(60),
                     y: r.top + ya._offset + ya._length / 2}; })()"""
    )
    page.mouse.click(box["x"], box["y"])
    settled(page, "ep", 60)
    assert cursor_x(page, "ep-graph") == 60

    # playing moves frame and cursor together
    page.keyboard.press("Space")
    until(page, "window.bsPlayer.state.ep.t >= 63", timeout_ms=5000)
    page.keyboard.press("Space")
    t = int(page.evaluate("window.bsPlayer.state.ep.t"))
    settled(page, "ep", t)
    shot(page, "episode")


def test_zoom_rereads_the_visible_window(page: Any, ui_data: UiData) -> None:
    page.goto(episode_url(ui_data))
    settled(page, "ep", 0)  # the page's callbacks are wired before the zoom
    page.evaluate(
        "Plotly.relayout(document.querySelector('#ep-graph .js-plotly-plot'),"
        " {'xaxis.range': [20, 40]})"
    )
    # the server re-reads steps 20..41 only: the KL trace's first step moves into the window
    until(
        page,
        """(() => { const gd = document.querySelector('#ep-graph .js-plotly-plot');
             const kl = gd._fullData.find(d => d.name === 'KL');
             return kl && kl.x.length > 0 && kl.x[0] >= 20 && kl.x[kl.x.length - 1] <= 41; })()""",
        timeout_ms=15000,
    )


def test_deep_link_to_a_step_survives_reload(page: Any, ui_data: UiData) -> None:
    page.goto(episode_url(ui_data, t=42))
    settled(page, "ep", 42)
    page.keyboard.press("ArrowLeft")
    settled(page, "ep", 41)
    until(page, "new URL(location.href).searchParams.get('t') === '41'")
    page.reload()
    settled(page, "ep", 41)
    assert cursor_x(page, "ep-graph") == 41


def test_review_a_flag_in_one_key_and_see_it_in_the_store(page: Any, ui_data: UiData) -> None:
    page.goto(f"/review?state=open&flag={ui_data.flag_id}")
    sign_in(page, ui_data.token)
    page.wait_for_selector("#rv-grid .ag-row")
    page.wait_for_selector("#rv-review[style*='border']")  # the selected flag's panel
    assert f"#{ui_data.flag_id}" in page.inner_text("#rv-facts")
    page.evaluate("document.activeElement && document.activeElement.blur()")  # keys to the page
    page.keyboard.press("c")
    page.wait_for_selector(".bs-toast-msg:has-text('state → confirmed')")
    store = open_store(ui_data.url)
    try:
        flag = store.reviews.get_flag(flag_id=ui_data.flag_id)
        history = store.reviews.flag_history(flag_id=ui_data.flag_id)
    finally:
        store.close()
    assert flag.state == "confirmed" and flag.updated_by == REVIEWER
    assert history[-1].who == REVIEWER and history[-1].changes["state"] == ["open", "confirmed"]
    page.wait_for_selector(f"#rv-history li:has-text('{REVIEWER}')")
    shot(page, "review")
    # jump from the queue to the episode at the flag
    page.click("#rv-open-link")
    page.wait_for_url(f"**/episodes/{ui_data.episode_id}?*flag={ui_data.flag_id}*")
    settled(page, "ep", 30)


def test_writes_need_a_sign_in(page: Any, ui_data: UiData) -> None:
    page.goto(episode_url(ui_data, flag=ui_data.flag_id))
    page.wait_for_selector("#ep-review[style*='border']")
    page.click("#ep-dismiss")
    page.wait_for_selector(".bs-toast-err:has-text('sign in')")
    store = open_store(ui_data.url)
    try:
        assert store.reviews.get_flag(flag_id=ui_data.flag_id).state != "dismissed"
    finally:
        store.close()


def test_compare_two_checkpoints_under_one_cursor(page: Any, ui_data: UiData) -> None:
    a, b = ui_data.checkpoints
    page.goto(f"/compare?episode={ui_data.episode_id}&a={a}&b={b}&t=5")
    settled(page, "cmp", 5)
    sources = panel_sources(page, "cmp")
    assert len(sources) == 8  # a row of four panels per checkpoint
    assert all(f"checkpoint={a}" in src for src in sources[1:4])
    assert all(f"checkpoint={b}" in src for src in sources[5:])
    page.keyboard.press("ArrowRight")
    settled(page, "cmp", 6)
    names = trace_names(page, "cmp-graph")
    assert any(n.startswith("A · ") for n in names) and any(n.startswith("Δ KL") for n in names)
    page.wait_for_selector("#cmp-summary .ag-row")
    shot(page, "compare")


def test_rules_preview_counts_flags_of_an_edit(page: Any, ui_data: UiData) -> None:
    page.goto("/rules")
    page.wait_for_selector("#rl-summary:has-text('flags with the edit')")
    before = page.inner_text("#rl-summary")
    page.fill("#rl-threshold", "0")
    page.fill("#rl-floor", "")
    until(page, f"document.querySelector('#rl-summary').innerText !== {before!r}", timeout_ms=8000)
    after = page.inner_text("#rl-summary")
    edited = int(after.split(" flags")[0])
    now = int(after.split("vs ")[1].split(" now")[0])
    assert edited > now, after  # a zero threshold without floor flags more
    shot(page, "rules")


def test_an_episode_opens_at_the_checkpoint_the_user_came_from_else_the_latest(
    page: Any, ui_data: UiData
) -> None:
    older, latest = ui_data.checkpoints
    page.goto(f"/episodes/{ui_data.episode_id}")
    settled(page, "ep", 0)
    assert f"checkpoint={latest}" in panel_sources(page, "ep")[0]
    assert "step 20" in page.inner_text("#ep-ckpt")
    page.goto(f"/episodes/{ui_data.episode_id}?checkpoint={older}")
    settled(page, "ep", 0)
    assert f"checkpoint={older}" in panel_sources(page, "ep")[0]
    # the runs list ranks episodes under the latest checkpoint and opens them there
    page.goto("/")
    page.wait_for_selector("#runs-episodes .ag-row")
    assert "step 20" in page.inner_text("#runs-detail .bs-card-head >> nth=-1")
    page.locator("#runs-episodes .ag-row").first.locator(".ag-cell").nth(1).click()
    page.wait_for_url(f"**/episodes/*?checkpoint={latest}")
    settled(page, "ep", 0)


def test_compare_defaults_to_earliest_vs_latest_and_names_the_run(
    page: Any, ui_data: UiData
) -> None:
    older, latest = ui_data.checkpoints
    page.goto("/compare")
    settled(page, "cmp", 0)
    sources = panel_sources(page, "cmp")
    assert f"checkpoint={older}" in sources[1] and f"checkpoint={latest}" in sources[5]
    names = trace_names(page, "cmp-graph")
    assert "A · run @ 10" in names and "B · run @ 20" in names
    assert page.inner_text("#cmp-episode").startswith("run · ")  # which run's copy it is
    # "Compare checkpoints" from the older checkpoint: that one against the latest
    page.goto(f"/episodes/{ui_data.episode_id}?checkpoint={older}")
    page.click("#ep-compare")
    wanted = {"episode": [str(ui_data.episode_id)], "a": [str(older)]}
    page.wait_for_url(  # the link may carry the player's step too (`&t=...`), or not yet
        lambda url: (
            urlsplit(url).path == "/compare"
            and {k: v for k, v in parse_qs(urlsplit(url).query).items() if k != "t"} == wanted
        )
    )
    settled(page, "cmp", 0)
    sources = panel_sources(page, "cmp")
    assert f"checkpoint={older}" in sources[1] and f"checkpoint={latest}" in sources[5]
    # ... and from the latest: the earliest against it
    page.goto(f"/compare?episode={ui_data.episode_id}&a={latest}")
    settled(page, "cmp", 0)
    sources = panel_sources(page, "cmp")
    assert f"checkpoint={latest}" in sources[1] and f"checkpoint={older}" in sources[5]


def test_review_queue_puts_high_severity_first_and_filters_in_the_query(
    page: Any, ui_data: UiData
) -> None:
    store = open_store(ui_data.url)
    try:
        trace = store.queries.find_trace(
            checkpoint_id=ui_data.checkpoints[0], episode_id=ui_data.episode_id
        )
        for t0, severity in ((60, "low"), (70, "high"), (80, "medium")):
            store.reviews.create_manual_flag(
                trace_id=trace.id, t0=t0, t1=t0 + 2, who="tests", severity=severity
            )
        expected = [
            str(f.id) for f in store.reviews.all_flags(state="open", sort="-severity,-peak")
        ]
        lows = store.reviews.list_flags(state="open", severity="low", limit=1).total
    finally:
        store.close()
    page.goto("/review?state=open")
    page.wait_for_selector("#rv-grid .ag-row")
    shown = page.evaluate(
        """(() => { const ids = [];
             window.dash_ag_grid.getApi('rv-grid').forEachNodeAfterFilterAndSort(
               n => ids.push([n.data.id, n.data.severity]));
             return ids; })()"""
    )
    rank = {"low": 0, "medium": 1, "high": 2}
    assert shown[0][1] == "high" and {sev for _, sev in shown} == set(rank)
    assert [rank[sev] for _, sev in shown] == sorted((rank[sev] for _, sev in shown), reverse=True)
    assert [i for i, _ in shown] == expected  # the query's order: rank, then peak
    page.goto("/review?state=open&severity=low")
    page.wait_for_selector(f"#rv-count:has-text('{lows} flags')")


def test_ground_truth_lane_header_and_list_columns(page: Any, ui_data: UiData) -> None:
    page.goto(episode_url(ui_data))
    settled(page, "ep", 0)
    facts = page.inner_text("#ep-facts-line")
    assert "occlusion" in facts and "slip" in facts
    assert page.get_attribute("#ep-name", "title").startswith("beliefscope:")  # full key on hover
    axes = page.evaluate(
        """document.querySelector('#ep-graph .js-plotly-plot').data
             .map(d => [d.name, d.xaxis, Number((d.yaxis || 'y1').slice(1))])"""
    )
    lane = [a for a in axes if a[0] in ("occluded (ground truth)", "box visible fraction")]
    assert len(lane) == 2, axes
    assert {x for _, x, _ in lane} == {"x"}  # the plots' own x axis and cursor
    assert {y for _, _, y in lane} == {max(y for _, _, y in axes)}  # the lane under the plots
    # every mark is in a legend: traces in Plotly's, shapes in the page's
    unlisted = page.evaluate(
        """(() => { const data = document.querySelector('#ep-graph .js-plotly-plot').data;
             const listed = data.filter(d => d.showlegend !== false);
             const shown = new Set(listed.map(d => d.legendgroup));
             return data.filter(d => d.showlegend === false && d.type !== 'heatmap'
                                  && !shown.has(d.legendgroup)).map(d => d.name); })()"""
    )
    assert not unlisted, unlisted
    assert "player step" in page.inner_text("#ep-legend")
    loaded = page.evaluate("performance.getEntriesByType('resource').map(r => r.name)")
    assert not [u for u in loaded if u.endswith("plotly.min.js")]  # the partial bundle serves
    # the lists show ground truth and filter by it
    page.goto("/")
    page.wait_for_selector("#runs-episodes .ag-row")
    counts = page.eval_on_selector_all(
        "#runs-episodes .ag-row [col-id='occlusions']", "els => els.map(e => e.innerText)"
    )
    assert counts and all(c.strip().isdigit() for c in counts), counts
    page.goto("/review?state=")
    page.wait_for_selector("#rv-grid .ag-row")
    at_slip = page.evaluate(
        """(() => { let n = 0; window.dash_ag_grid.getApi('rv-grid').forEachNode(
             r => { n += r.data['at slip'] === 'yes'; }); return n; })()"""
    )
    page.goto("/review?state=&truth=slip")
    page.wait_for_selector(f"#rv-count:has-text('{at_slip} flags')")


def test_truth_panel_draws_the_decoded_belief_of_the_hidden_box(page: Any, ui_data: UiData) -> None:
    page.goto(episode_url(ui_data, t=20))
    settled(page, "ep", 20)
    truth = next(src for src in panel_sources(page, "ep") if "/truth/" in src)
    assert "/truth/20?" in truth and f"checkpoint={ui_data.checkpoints[1]}" in truth
    assert "decoded belief" in page.inner_text("#ep-player .bs-marks")
    magenta = page.evaluate(
        """(() => { const c = Array.from(document.querySelectorAll('#ep-player canvas'))
               .find(e => e.dataset.src.includes('/truth/'));
             const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let n = 0;
             for (let i = 0; i < px.length; i += 4)
               n += px[i] > 190 && px[i + 1] < 120 && px[i + 2] > 190;
             return n; })()"""
    )
    assert magenta > 4, "no decoded-belief mark drawn on the ground-truth view"


def test_panels_are_large_crisp_captioned_in_html_and_enlarge_on_click(
    page: Any, ui_data: UiData
) -> None:
    page.set_viewport_size({"width": 1600, "height": 1000})
    for url, prefix in (
        (episode_url(ui_data), "ep"),
        (f"/compare?episode={ui_data.episode_id}", "cmp"),
    ):
        page.goto(url)
        settled(page, prefix, 0)
        boxes = page.eval_on_selector_all(
            f"#{prefix}-player canvas",
            """els => els.map(e => { const r = e.getBoundingClientRect();
                 return [r.width, r.height, getComputedStyle(e).imageRendering, e.width]; })""",
        )
        assert boxes and all(w >= 256 and h >= 256 for w, h, _, _ in boxes), boxes
        assert all(style == "pixelated" for _, _, style, _ in boxes)
        assert all(pixels < w for w, _, _, pixels in boxes[:1])  # scaled up by CSS, not blurred
        captions = page.eval_on_selector_all(
            f"#{prefix}-player figcaption .bs-cap",
            "els => els.map(e => [e.innerText, parseFloat(getComputedStyle(e).fontSize)])",
        )
        assert all(text and size >= 11 for text, size in captions), captions
    page.click("#cmp-player canvas[data-bs-panel='1']")
    big = page.eval_on_selector(".bs-panel-big canvas", "e => e.getBoundingClientRect().width")
    assert big >= 600
    page.keyboard.press("Escape")
    assert page.locator(".bs-panel-big").count() == 0
