"""Frame endpoints on real episode files and a real checkpoint: overlays, comparison, truth."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from beliefscope.replay.base import get_format
from beliefscope.store.engine import Store
from server import frames


def _decode(data: bytes) -> np.ndarray:
    return cv2.cvtColor(
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )


def _episode(client: TestClient) -> dict:
    run = client.get("/api/v1/runs").json()["data"][0]
    return client.get(f"/api/v1/runs/{run['id']}/episodes").json()["data"][0]


def test_plain_frame_is_the_recorded_observation(client: TestClient, store_copy: Store) -> None:
    ep = _episode(client)
    answer = client.get(
        f"/api/v1/episodes/{ep['id']}/frames/7", params={"format": "png", "scale": 2}
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    image = _decode(answer.content)
    info = store_copy.queries.get_episode(episode_id=ep["id"])
    fmt = get_format(info.format)
    ref = next(r for r in fmt.list(Path(info.source_path).parent) if r.key == info.key)
    obs = fmt.frame(ref, 7)
    h, w = obs.shape[:2]
    border = 2
    # the bottom-right quadrant (below the caption box) is the observation, upscaled by 2
    got = image[border + h : border + 2 * h, border + w : border + 2 * w]
    assert np.array_equal(got, frames.upscale(obs, 2)[h:, w:])


def test_overlay_panels_and_cache(app: FastAPI, client: TestClient) -> None:
    ep = _episode(client)
    url = f"/api/v1/episodes/{ep['id']}/frames/12"
    answer = client.get(url, params={"panels": "recon,pred,error"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    image = _decode(answer.content)
    border = 4
    assert image.shape[1] == 4 * 64 * 4 + 2 * border  # obs + 3 panels, 64 px upscaled by 4
    service = app.state.ctx.frames
    cached = service.cached_frames
    again = client.get(url, params={"panels": "recon,pred,error"})
    assert again.content == answer.content and service.cached_frames == cached
    recon_only = _decode(client.get(url, params={"panels": "recon"}).content)
    assert recon_only.shape[1] == 2 * 64 * 4 + 2 * border
    # a specific checkpoint gives a different reconstruction than the default (the newest)
    ckpts = client.get(f"/api/v1/runs/{ep['run_id']}/checkpoints").json()["data"]
    first = client.get(
        url, params={"panels": "recon", "checkpoint": ckpts[0]["id"], "format": "png"}
    )
    last = client.get(
        url, params={"panels": "recon", "checkpoint": ckpts[-1]["id"], "format": "png"}
    )
    assert first.status_code == last.status_code == 200 and first.content != last.content


def test_compare_frame_stacks_two_checkpoints(client: TestClient) -> None:
    ep = _episode(client)
    a, b = (c["id"] for c in client.get(f"/api/v1/runs/{ep['run_id']}/checkpoints").json()["data"])
    answer = client.get(f"/api/v1/episodes/{ep['id']}/compare/3", params={"a": a, "b": b})
    assert answer.status_code == 200
    single = _decode(
        client.get(
            f"/api/v1/episodes/{ep['id']}/frames/3", params={"panels": "recon,pred,error"}
        ).content
    )
    both = _decode(answer.content)
    assert both.shape[1] == single.shape[1] and both.shape[0] == 2 * single.shape[0]


def test_flag_border_follows_review_state(
    client: TestClient, store_copy: Store, auth: dict
) -> None:
    ep = _episode(client)
    trace = client.get(f"/api/v1/episodes/{ep['id']}/traces").json()["data"][-1]
    for flag in store_copy.reviews.list_flags(trace_id=trace["id"]).items:
        client.patch(f"/api/v1/flags/{flag.id}", json={"state": "dismissed"}, headers=auth)
    created = client.post(
        "/api/v1/flags",
        json={"trace_id": trace["id"], "t0": 20, "t1": 25, "state": "confirmed"},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    params = {"checkpoint": trace["checkpoint_id"], "format": "png"}

    def corner(t: int) -> tuple[int, ...]:
        answer = client.get(f"/api/v1/episodes/{ep['id']}/frames/{t}", params=params)
        return tuple(_decode(answer.content)[0, 0])

    assert corner(22) == frames.REVIEW_COLORS["confirmed"]
    flags_here = store_copy.reviews.list_flags(trace_id=trace["id"]).items
    free = [t for t in range(40) if not any(f.t0 <= t <= f.t1 for f in flags_here)]
    assert free, "every step is flagged: the rules flag too much for this test"
    assert corner(free[0]) not in frames.REVIEW_COLORS.values()
    client.patch(f"/api/v1/flags/{created.json()['id']}", json={"state": "dismissed"}, headers=auth)
    assert corner(22) == frames.REVIEW_COLORS["dismissed"]


def test_truth_view_rerenders_the_overview_with_the_box_marked(client: TestClient) -> None:
    ep = _episode(client)
    answer = client.get(
        f"/api/v1/episodes/{ep['id']}/truth/10", params={"format": "png", "size": 128}
    )
    assert answer.status_code == 200, answer.text
    image = _decode(answer.content)
    assert image.shape[1] == 128 and image.shape[0] > 128  # render + caption strip
    marker = np.all(image[:128] == (80, 255, 80), axis=-1)
    assert marker.any()  # the true box position is marked
    other = _decode(
        client.get(
            f"/api/v1/episodes/{ep['id']}/truth/35", params={"format": "png", "size": 128}
        ).content
    )
    assert not np.array_equal(image[:128], other[:128])


def test_frame_errors(client: TestClient) -> None:
    ep = _episode(client)
    base = f"/api/v1/episodes/{ep['id']}"
    assert client.get(f"{base}/frames/40").status_code == 404  # length 40: steps 0..39
    assert client.get(f"{base}/frames/-1").status_code == 404
    assert client.get(f"{base}/frames/999999999999").status_code == 404
    assert client.get("/api/v1/episodes/999/frames/0").status_code == 404
    assert client.get(f"{base}/frames/0", params={"checkpoint": 999}).status_code == 404
    bad = client.get(f"{base}/frames/0", params={"panels": "recon,xray"})
    assert bad.status_code == 400 and "xray" in bad.json()["detail"]
    assert client.get(f"{base}/frames/0", params={"scale": 99}).status_code == 422
    assert client.get(f"{base}/frames/0", params={"format": "gif"}).status_code == 422
    assert client.get(f"{base}/compare/0", params={"a": 1}).status_code == 422


def test_strip_holds_a_window_of_steps_with_one_column_per_panel(
    client: TestClient, store_copy: Store
) -> None:
    ep = _episode(client)
    ckpt = client.get(f"/api/v1/runs/{ep['run_id']}/checkpoints").json()["data"][-1]["id"]
    base = f"/api/v1/episodes/{ep['id']}/strip"
    answer = client.get(f"{base}/5", params={"n": 4, "checkpoint": ckpt})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    image = _decode(answer.content)
    assert image.shape == (4 * 64, 4 * 64, 3)  # 4 steps x (obs, recon, pred, error)
    info = store_copy.queries.get_episode(episode_id=ep["id"])
    fmt = get_format(info.format)
    ref = next(r for r in fmt.list(Path(info.source_path).parent) if r.key == info.key)
    for row in range(4):
        assert np.array_equal(image[64 * row : 64 * (row + 1), :64], fmt.frame(ref, 5 + row))
    recon = image[:64, 64:128]
    assert not np.array_equal(recon, image[:64, :64])  # the model's decode, not the frame
    end = _decode(client.get(f"{base}/38", params={"n": 10, "panels": "obs"}).content)
    assert end.shape == (2 * 64, 64, 3)  # cut at the episode's last step (39)
    assert client.get(f"{base}/40").status_code == 404
    bad = client.get(f"{base}/0", params={"panels": "obs,xray"})
    assert bad.status_code == 400 and "xray" in bad.json()["detail"]


def test_truth_view_draws_the_decoded_belief_where_the_probe_ran(
    client: TestClient, store_copy: Store
) -> None:
    from ingest.probes_cli import decode_checkpoint, load_episode

    ep = _episode(client)
    q = store_copy.queries
    ckpt = q.list_checkpoints(run_id=ep["run_id"]).items[-1]
    infos = [e for e in q.list_episodes(run_id=ep["run_id"]).items if e.has_truth]
    decode_checkpoint(store_copy, ckpt, infos, [load_episode(e) for e in infos])
    url = f"/api/v1/episodes/{ep['id']}/truth/10"
    params = {"format": "png", "size": 128, "caption": "false"}
    plain = _decode(client.get(url, params=params).content)
    drawn = _decode(client.get(url, params={**params, "checkpoint": ckpt.id}).content)
    assert plain.shape == drawn.shape == (128, 128, 3)  # no caption strip
    for color in (frames.BELIEF_COLOR, frames.FUTURES_COLOR):
        assert not np.all(plain == color, axis=-1).any()
        assert np.all(drawn == color, axis=-1).any(), color
    first = q.list_checkpoints(run_id=ep["run_id"]).items[0]  # no probe: nothing more drawn
    same = _decode(client.get(url, params={**params, "checkpoint": first.id}).content)
    assert np.array_equal(same, plain)
