"""The frame service's caches: a model loads once however many requests need it at once, and
decodes of whole episodes are bounded by bytes, not by how many episodes they are."""

from __future__ import annotations

import threading
import time

import pytest

from beliefscope.rssm import formats as ckpt_formats
from beliefscope.store.engine import Store
from server import frame_service
from server.cache import ByteLRU
from server.frame_service import FrameService
from tests.server.conftest import Built, make_settings


def test_a_model_loads_once_under_concurrent_requests(
    built: Built, store_copy: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    real = ckpt_formats.load

    def slow_load(*args, **kwargs):  # type: ignore[no-untyped-def]
        loads.append(threading.get_ident())
        time.sleep(0.2)  # long enough for every request to miss the cache
        return real(*args, **kwargs)

    monkeypatch.setattr(frame_service.ckpt_formats, "load", slow_load)
    service = FrameService(store_copy, make_settings(built, store_copy))
    q = store_copy.queries
    (run,) = q.list_runs().items
    ckpt = q.list_checkpoints(run_id=run.id).items[-1]
    barrier = threading.Barrier(6)
    models = []

    def ask() -> None:
        barrier.wait()
        models.append(service.model(ckpt))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len(models) == 6 and all(m is models[0] for m in models)


def test_decodes_are_bounded_by_bytes(built: Built, store_copy: Store) -> None:
    q = store_copy.queries
    (run,) = q.list_runs().items
    ckpt = q.list_checkpoints(run_id=run.id).items[-1]
    episodes = q.list_episodes(run_id=run.id).items
    assert len(episodes) == 3
    settings = make_settings(built, store_copy)
    one = FrameService(store_copy, settings).decodes(ckpt, episodes[0])
    size = one.recon.nbytes + one.pred.nbytes
    service = FrameService(store_copy, settings, decode_cache_bytes=int(2.5 * size))
    first, second, third = (service.decodes(ckpt, e) for e in episodes)
    assert service.decodes(ckpt, episodes[2]) is third  # kept
    assert service.decodes(ckpt, episodes[1]) is second
    assert service.decodes(ckpt, episodes[0]) is not first  # evicted: two fit the budget
    too_small = FrameService(store_copy, settings, decode_cache_bytes=size // 2)
    big = too_small.decodes(ckpt, episodes[0])
    assert big.recon.shape == one.recon.shape  # served, though it cannot be kept
    assert too_small.decodes(ckpt, episodes[0]) is not big


def test_byte_lru_evicts_by_size_and_retries_a_failed_make() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(100, len)
    for key in "abc":
        cache.get_or_make(key, lambda: b"x" * 40)
    assert len(cache) == 2 and cache.bytes == 80  # "a" went first
    assert cache.get_or_make("c", lambda: b"other") == b"x" * 40
    with pytest.raises(RuntimeError):
        cache.get_or_make("d", lambda: (_ for _ in ()).throw(RuntimeError("no")))
    assert cache.get_or_make("d", lambda: b"y") == b"y"  # a failure is not remembered
