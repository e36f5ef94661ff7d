"""The Runs page as a user meets a failed or running ingest, in headless Chromium: a failed run
shows as failed with its error, a signed-in user deletes it; a running ingest shows its
progress and the grid follows it on its own; the sign-in hint names the store served."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from beliefscope.cli import main
from beliefscope.store.engine import open_store, upgrade
from tests.builders import ingest_run, make_run, make_world
from tests.dashboard.conftest import REVIEWER, UiData, serve
from tests.dashboard.test_browser import sign_in, until
from tests.families.conftest import TORCH_DIR

pytestmark = pytest.mark.browser

FAILED = "copied-mid-write"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiData]:
    """A store with a good run and the failed ingest of a truncated `latest.pt`."""
    root = tmp_path_factory.mktemp("runs-page")
    url = f"sqlite:///{root / 'store.db'}"
    with pytest.MonkeyPatch.context() as mp:
        from beliefscope.config import get_settings

        mp.setenv("BELIEFSCOPE_HOME", str(root / "home"))
        get_settings.cache_clear()
        world = make_world(root / "world", episodes=2, length=30)
        make_run(root / "good", world, steps=2, save_every=1)
        upgrade(url)
        ingest_run(url, root / "good", world)
        bad = root / FAILED
        (bad / "train_eps").mkdir(parents=True)
        (bad / "latest.pt").write_bytes((TORCH_DIR / "latest.pt").read_bytes()[:4096])
        for episode in (TORCH_DIR / "episodes").glob("*.npz"):
            shutil.copy(episode, bad / "train_eps")
        assert main(["ingest", str(bad), "--store", url, "--threads", "1"]) == 1
    get_settings.cache_clear()
    store = open_store(url)
    try:
        q = store.queries
        good = q.find_run(name="good")
        ckpts = q.list_checkpoints(run_id=good.id).items
        episode = q.list_episodes(run_id=good.id).items[0]
        trace = q.find_trace(checkpoint_id=ckpts[-1].id, episode_id=episode.id)
        flag = store.reviews.create_manual_flag(trace_id=trace.id, t0=3, t1=6, who="tests")
        _, token = store.access.create_token(REVIEWER, scope="admin", who="tests")
    finally:
        store.close()
    yield UiData(url, root, good.id, (ckpts[0].id, ckpts[-1].id), episode.id, flag.id, token)


@pytest.fixture(scope="module")
def base(data: UiData) -> Iterator[str]:
    with serve(data) as url:
        yield url


@pytest.fixture
def page(browser: Any, base: str) -> Iterator[Any]:
    context = browser.new_context(base_url=base, viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"console errors: {errors}"


def _failed_run_id(data: UiData) -> int:
    store = open_store(data.url)
    try:
        return store.queries.find_run(name=FAILED).id
    finally:
        store.close()


def test_sign_in_names_the_store_it_serves(page: Any, data: UiData) -> None:
    page.goto("/")
    command = f"beliefscope token create NAME --store {data.url}"
    assert page.get_attribute(".bs-auth", "title") == f"sign in with a token from `{command}`"
    page.fill("#bs-token", "bsk_not-a-token")
    page.click("#bs-signin")
    page.wait_for_selector(f".bs-toast-err:has-text('{command}')")


def test_a_failed_ingest_shows_its_error_and_a_signed_in_user_deletes_it(
    page: Any, data: UiData
) -> None:
    run_id = _failed_run_id(data)
    page.goto(f"/?run={run_id}")
    page.wait_for_selector(f"#runs-grid .ag-row:has-text('{FAILED}')")
    row = page.inner_text(f"#runs-grid .ag-row:has-text('{FAILED}')")
    assert "failed: nothing ingested:" in row
    failed = page.inner_text("#runs-failed")
    assert "Ingest failed" in failed and "cannot load with torch.load" in failed
    assert str(data.root / FAILED / "latest.pt") in failed and "snapshots" not in failed
    assert page.locator("#runs-delete").count() == 0  # read-only: nothing to delete with
    sign_in(page, data.token)
    page.goto(f"/?run={run_id}")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#runs-delete")
    page.wait_for_selector(f".bs-toast-msg:has-text('run {FAILED} deleted')")
    until(page, f"!document.querySelector('#runs-grid').innerText.includes('{FAILED}')")
    store = open_store(data.url)
    try:
        assert [r.name for r in store.queries.list_runs().items] == ["good"]
    finally:
        store.close()


def test_a_running_ingest_shows_progress_and_the_grid_follows_it(page: Any, data: UiData) -> None:
    store = open_store(data.url)
    w = store.writer
    job = w.create_job("ingest", run_id=data.run_id)  # what the ingest service records
    w.start_job(job)
    w.update_job(job, total=8, checkpoints_total=2, episodes=2)
    w.update_job(job, add_done=2, add_checkpoints_done=1)
    try:
        page.goto(f"/?run={data.run_id}")
        progress = "running: 1/2 checkpoints x 2 episodes (2/8 traces)"
        page.wait_for_selector(f"#runs-grid .ag-row:has-text('{progress}')")
        assert page.inner_text("#runs-progress") == f"Ingest {progress}"
        w.update_job(job, add_done=6, add_checkpoints_done=1)
        w.finish_job(job, message="done")
        grid = "document.querySelector('#runs-grid').innerText"
        until(  # no reload: the page polls while an ingest runs
            page, f"{grid}.includes('done') && !{grid}.includes('running')", timeout_ms=10_000
        )
    finally:
        store.close()
