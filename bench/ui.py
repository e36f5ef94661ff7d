"""Episode-page speed, measured in headless Chromium against the real app and a real store.

    python bench/ui.py [--repeat 5] [--scrubs 30]

Builds a store the way a user does (MuJoCo world episodes of 1,000 and 10,000 steps, a tiny
model trained for a few updates, `beliefscope ingest`, default rules), serves it with
`beliefscope.cli.serve.build_app`, and measures in the browser:
- time to interactive of the episode page: navigation start -> the frame image loaded and the
  step cursor drawn on the stacked plots (target <= 1.5 s), for the 1k and the 10k episode;
- step-scrub round trip: a seek -> every frame showing the new (uncached) step and every cursor
  moved (target <= 150 ms).
Ratios are to the targets and between the two episode lengths, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.dashboard.conftest import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    UiData,
    build_store,
    serve,
)

TTI_TARGET_MS = 1500.0
SCRUB_TARGET_MS = 150.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="page loads per episode")
    parser.add_argument("--scrubs", type=int, default=30, help="seeks per episode")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="build the store here and reuse it on later runs (default: a temporary directory)",
    )
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from beliefscope.store.engine import open_store

    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        data = _store(args.workdir or Path(tmp))
        store = open_store(data.url)
        episodes = {
            e.length: e.id for e in store.queries.list_episodes(run_id=data.run_id, limit=100).items
        }
        store.close()
        results: dict[int, dict[str, list[float]]] = {}
        with serve(data) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for length in (1000, 10_000):
                url = f"{base}/episodes/{episodes[length]}?checkpoint={data.checkpoints[1]}"
                results[length] = measure(browser, url, length, args.repeat, args.scrubs)
            browser.close()
    report(results)
    return 0


def _store(root: Path) -> UiData:
    saved = root / "bench-ui.json"
    if saved.exists():
        fields = json.loads(saved.read_text())
        return UiData(
            **{**fields, "root": Path(fields["root"]), "checkpoints": tuple(fields["checkpoints"])}
        )
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    data = build_store(root, episodes={1000: 1, 10_000: 1}, variants=(), decode=False)
    print(f"store built in {time.perf_counter() - started:.0f} s")
    saved.write_text(json.dumps({**asdict(data), "root": str(data.root)}))
    return data


def measure(browser, url: str, length: int, repeat: int, scrubs: int) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    tti: list[float] = []
    scrub: list[float] = []
    errors: list[str] = []
    for i in range(repeat + 1):  # the first load warms the server's model and frame caches
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url)
        timeout = 20_000 if i else 300_000  # the first load decodes the episode on the server
        ms = page.evaluate(
            f"window.bsPlayer.waitSettled('ep', 0, {timeout}).then(() => performance.now())"
        )
        if i:
            tti.append(float(ms))
        if i == repeat:
            step = max(length // scrubs, 1)
            for k in range(1, scrubs + 1):
                t = (k * step + 7 * k) % length
                scrub.append(
                    float(
                        page.evaluate(
                            f"""(async () => {{ const s = performance.now();
                         window.bsPlayer.seek('ep', {t});
                         await window.bsPlayer.waitSettled('ep', {t}, 5000);
                         return performance.now() - s; }})()"""
                        )
                    )
                )
        context.close()
    assert not errors, f"console errors: {errors[:3]}"
    return {"tti": tti, "scrub": scrub}


def report(results: dict[int, dict[str, list[float]]]) -> None:
    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]

    print(
        f"{'episode':>10} {'TTI p50':>9} {'TTI max':>9} {'/target':>8} "
        f"{'scrub p50':>10} {'scrub p95':>10} {'/target':>8}"
    )
    for length, r in results.items():
        tti50, scrub50 = statistics.median(r["tti"]), statistics.median(r["scrub"])
        print(
            f"{length:>10,} {tti50:>7.0f}ms {max(r['tti']):>7.0f}ms {tti50 / TTI_TARGET_MS:>8.2f} "
            f"{scrub50:>8.0f}ms {p(r['scrub'], 95):>8.0f}ms {scrub50 / SCRUB_TARGET_MS:>8.2f}"
        )
    short, long = results[1000], results[10_000]
    ratio = statistics.median(long["tti"]) / statistics.median(short["tti"])
    print(f"TTI 10k / 1k steps: {ratio:.2f}x (server-side min/max downsampling keeps it flat)")


if __name__ == "__main__":
    sys.exit(main())
