"""`beliefscope audit LOGDIR` end to end: a log dir holding the demo checkpoint and a replay
whose actions are one step late, a real SQLite store, the API route and the Runs page in a real
browser, whose link opens the episode at the step the finding names."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from beliefscope.cli import main
from beliefscope.config import Settings, get_settings
from beliefscope.store.engine import open_store, upgrade
from beliefscope.values.audit import PROBE, AuditReport
from server.app import create_app
from tests.audit.corrupt import CORRUPTIONS, corrupted_copy
from tests.dashboard.conftest import UiData, serve

EPISODES = 4


@dataclass(frozen=True)
class Audited:
    root: Path
    logdir: Path
    url: str
    run_id: int
    checkpoint_id: int
    out: str


@pytest.fixture(scope="module")
def audited(
    world: Path, demo_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Audited]:
    root = tmp_path_factory.mktemp("audit-cli")
    logdir = root / "run"
    logdir.mkdir()
    shutil.copy(demo_checkpoint, logdir)
    corrupted_copy(world, logdir / "replay", CORRUPTIONS["actions shifted by one"])
    url = f"sqlite:///{root / 'store.db'}"
    upgrade(url)
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as env, contextlib.redirect_stdout(out):
        env.setenv("BELIEFSCOPE_HOME", str(root / "home"))  # checkpoint snapshots go here
        get_settings.cache_clear()
        argv = ["audit", str(logdir), "--episodes", str(EPISODES), "--store", url]
        code = main([*argv, "--threads", "1"])
    get_settings.cache_clear()
    assert code == 1, out.getvalue()  # a check failed
    store = open_store(url)
    try:
        run = store.queries.find_run(name="run")
        (ckpt,) = store.queries.list_checkpoints(run_id=run.id).items
    finally:
        store.close()
    yield Audited(root, logdir, url, run.id, ckpt.id, out.getvalue())


def test_the_report_is_printed_stored_and_its_episodes_ingested(audited: Audited) -> None:
    assert "FAIL  Action alignment: actions off by 1 step (late)" in audited.out
    links = re.findall(r"open (/episodes/\d+\?checkpoint=\d+&t=\d+)", audited.out)
    assert links, audited.out
    store = open_store(audited.url)
    try:
        data = store.reviews.get_probe_summary(checkpoint_id=audited.checkpoint_id, probe=PROBE)
        report = AuditReport.from_dict(data)
        episodes = store.queries.list_episodes(run_id=audited.run_id).items
        traces = store.queries.list_traces(checkpoint_id=audited.checkpoint_id).items
    finally:
        store.close()
    assert len(report.episodes) == EPISODES == len(episodes) == len(traces)
    action = report.check("action_alignment")
    assert action.status == "fail" and action.numbers["best_shift"] == -1
    ids = {e.id for e in episodes}
    assert all(w.episode_id in ids for c in report.checks for w in c.where)
    assert data["status"] == "fail" and len(data["checks"]) == 8


def test_the_api_lists_the_audit_with_links(audited: Audited) -> None:
    store = open_store(audited.url)
    settings = Settings(
        store=audited.url,
        home=audited.root / "home",
        data_roots=[audited.root],
        allowed_hosts=["testserver"],  # the Host header of Starlette's TestClient
    )
    try:
        with TestClient(create_app(settings, store=store)) as client:
            body = client.get(f"/api/v1/runs/{audited.run_id}/audit").json()
            missing = client.get("/api/v1/runs/999/audit")
    finally:
        store.close()
    assert missing.status_code == 404
    (entry,) = body["data"]
    assert body["count"] == 1 and entry["checkpoint_id"] == audited.checkpoint_id
    checks = {c["name"]: c for c in entry["checks"]}
    assert entry["status"] == "fail" and checks["action_alignment"]["status"] == "fail"
    where = checks["action_alignment"]["where"][0]
    assert where["link"] == (
        f"/episodes/{where['episode_id']}?checkpoint={audited.checkpoint_id}&t={where['t']}"
    )
    assert checks["kl_semantics"]["numbers"]["recorded"]["free_nats"] == 1.0


def test_bad_choices_are_errors_naming_what_exists(audited: Audited, capsys: Any) -> None:
    base = [str(audited.logdir), "--store", audited.url, "--threads", "1"]
    assert main(["audit", *base, "--checkpoint", "12345"]) == 2
    assert "no such checkpoint (steps found:" in capsys.readouterr().err
    assert main(["audit", *base, "--episodes", "0"]) == 2
    assert "--episodes must be at least 1" in capsys.readouterr().err
    empty = audited.root / "empty"
    empty.mkdir()
    assert main(["audit", str(empty), "--store", audited.url]) == 2
    assert f"{empty}: no checkpoints found" in capsys.readouterr().err


@pytest.mark.browser
def test_the_runs_page_shows_the_audit_and_opens_the_episode(
    audited: Audited,
    browser: Any,
) -> None:
    data = UiData(audited.url, audited.root, audited.run_id, (0, 0), 0, 0, "")
    with serve(data) as base:
        context = browser.new_context(base_url=base, viewport={"width": 1440, "height": 900})
        page = context.new_page()
        try:
            page.goto(f"/?run={audited.run_id}")
            row = page.wait_for_selector("#runs-audit-action_alignment")
            assert "fail" in row.inner_text() and "actions off by 1 step" in row.inner_text()
            passed = page.locator("#runs-audit .bs-pill-pass").count()
            assert passed >= 4, page.inner_text("#runs-audit")
            link = page.locator("#runs-audit-action_alignment a").first
            href = link.get_attribute("href")
            t = int(href.rsplit("t=", 1)[1])
            link.click()
            page.wait_for_url(f"**{href}")
            page.wait_for_selector("#ep-graph .js-plotly-plot")
            page.evaluate(f"window.bsPlayer.waitSettled('ep', {t}, 8000)")
            assert page.inner_text("#ep-player .bs-step") == str(t)
        finally:
            context.close()
