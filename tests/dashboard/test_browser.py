"""The dashboard in headless Chromium against the real app and a real store.

Each test opens a page, acts like a user and checks what the page shows (and, for writes, the
store); the `page` fixture fails a test whose console logged an error. Screenshots of each page
go to $BELIEFSCOPE_SCREENSHOTS (docs/screenshots/ for the README).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

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
    return float(
        page.evaluate(
            f"""document.getElementById('{graph}').querySelector('.js-plotly-plot').layout.shapes
             .find(s => s.name === 'cursor').x0"""
        )
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
    src = page.get_attribute("#ep-player img.bs-frame", "src")
    assert f"/episodes/{ui_data.episode_id}/frames/3?" in src
    assert f"checkpoint={ui_data.checkpoints[1]}" in src
    assert page.inner_text("#ep-player .bs-step") == "3"
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
    page.wait_for_selector("#ep-graph .js-plotly-plot")
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
        timeout_ms=8000,
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
    page.click("body")  # keys go to the page, not an input
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
    sources = page.eval_on_selector_all("#cmp-player img.bs-frame", "els => els.map(e => e.src)")
    assert len(sources) == 2
    assert f"checkpoint={a}" in sources[0] and f"checkpoint={b}" in sources[1]
    page.keyboard.press("ArrowRight")
    settled(page, "cmp", 6)
    names = page.evaluate(
        "document.querySelector('#cmp-graph .js-plotly-plot').data.map(d => d.name)"
    )
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
