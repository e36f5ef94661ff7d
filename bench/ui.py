"""Episode-page speed, measured in headless Chromium against the real app and a real store, for
this tree and a previous commit in the same run.

    python bench/ui.py [--against REF] [--repeat 5] [--scrubs 30]

Builds a store the way a user does (MuJoCo world episodes of 1,000 and 10,000 steps, a tiny
model trained for a few updates, `beliefscope ingest`, default rules), serves it twice, each in
its own process: with this tree's code and with `--against`'s (`git archive` of that commit;
default: where this branch left main, the commit before its changes), and measures both in the
same browser, alternating, at a 1600x1000 viewport:
- time to interactive of the episode page: navigation start -> every panel showing the step
  and the step cursor drawn on the plots (target <= 1.5 s), for the 1k and the 10k episode;
- arrow-key scrub: a key press -> the next step on every panel and the cursor (<= 150 ms);
- seek: a jump far away (a step nothing has loaded yet) -> every panel and the cursor there.
Every figure is printed beside the same figure of the previous commit and their ratio, with
the load average before and after (the machine is shared: absolute times swing with it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.dashboard.conftest import UiData, build_store  # noqa: E402

TTI_TARGET_MS = 1500.0
SCRUB_TARGET_MS = 150.0
VIEWPORT = {"width": 1600, "height": 1000}
SERVE = """
import json, sys
from pathlib import Path
from tests.dashboard.conftest import UiData, serve
fields = json.loads(sys.argv[1])
fields.update(root=Path(fields["root"]), checkpoints=tuple(fields["checkpoints"]))
data = UiData(**fields)
with serve(data) as base:
    print(base, flush=True)
    sys.stdin.read()
"""
"""Serve a store with the code of the current directory until stdin closes."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--against",
        help="commit to compare with (default: the merge base of HEAD and main; once a branch "
        "is merged, name the commit before it)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="page loads per episode and tree")
    parser.add_argument("--scrubs", type=int, default=30, help="seeks and key presses per episode")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="build the store here and reuse it on later runs (default: a temporary directory)",
    )
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from beliefscope.store.engine import open_store

    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        data = _store(args.workdir or Path(tmp) / "store")
        store = open_store(data.url)
        episodes = {
            e.length: e.id for e in store.queries.list_episodes(run_id=data.run_id, limit=100).items
        }
        store.close()
        against = args.against or _git("merge-base", "HEAD", "main")
        trees = {"this tree": ROOT, against[:10]: _export(against, Path(tmp) / "against")}
        load_before = os.getloadavg()
        results: dict[tuple[str, int], dict[str, list[float]]] = {}
        with ExitStack() as stack, sync_playwright() as p:
            bases = {name: stack.enter_context(_serve(tree, data)) for name, tree in trees.items()}
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for length in (1000, 10_000):
                for round_ in range(args.repeat + 1):  # round 0 warms each server's caches
                    for name, base in bases.items():
                        url = f"{base}/episodes/{episodes[length]}?checkpoint={data.checkpoints[1]}"
                        got = results.setdefault(
                            (name, length), {"tti": [], "key": [], "seek": [], "failed": []}
                        )
                        last = round_ == args.repeat
                        measure(
                            browser, url, length, got, warm=round_ == 0, scrub=last, n=args.scrubs
                        )
            browser.close()
        load_after = os.getloadavg()
    report(results, list(trees), load_before, load_after)
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


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _export(ref: str, out: Path) -> Path:
    """The files of commit `ref` (no history), to serve its code."""
    out.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


@contextmanager
def _serve(tree: Path, data: UiData) -> Iterator[str]:
    """The app of `tree`'s code in its own process, serving the store; yields its base URL."""
    fields = json.dumps({**asdict(data), "root": str(data.root)})
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, fields],
        cwd=tree,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    base = proc.stdout.readline().strip()
    assert base.startswith("http"), f"the server of {tree} did not start"
    try:
        yield base
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


KEY = """async () => {
  const t = window.bsPlayer.state.ep.t + 1, s = performance.now();
  document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', bubbles: true}));
  await window.bsPlayer.waitSettled('ep', t, 5000);
  return performance.now() - s; }"""
SEEK = """async (t) => { const s = performance.now();
  window.bsPlayer.seek('ep', t);
  await window.bsPlayer.waitSettled('ep', t, 5000);
  return performance.now() - s; }"""


def measure(  # type: ignore[no-untyped-def]
    browser, url: str, length: int, got: dict[str, list[float]], *, warm: bool, scrub: bool, n: int
) -> None:
    errors: list[str] = []
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    timeout = 1_800_000 if warm else 30_000  # the first load decodes the episode on the server
    try:
        ms = page.evaluate(
            f"window.bsPlayer.waitSettled('ep', 0, {timeout}).then(() => performance.now())"
        )
    except Exception as err:  # a load that never settles is counted and named, not timed
        got["failed"].append(str(err).splitlines()[0])
        print(f"  {url}: {got['failed'][-1]}", flush=True)
        context.close()
        return
    if not warm:
        got["tti"].append(float(ms))
    if scrub:
        for _ in range(n):
            got["key"].append(float(page.evaluate(KEY)))
        step = max(length // n, 1)
        for k in range(1, n + 1):
            got["seek"].append(float(page.evaluate(SEEK, (k * step + 7 * k) % length)))
    context.close()
    assert not errors, f"console errors on {url}: {errors[:3]}"


def report(
    results: dict[tuple[str, int], dict[str, list[float]]],
    trees: list[str],
    before: tuple[float, float, float],
    after: tuple[float, float, float],
) -> None:
    def p95(values: list[float]) -> float:
        if not values:
            return float("nan")
        return statistics.quantiles(values, n=100)[94] if len(values) > 1 else values[0]

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    def most(values: list[float]) -> float:
        return max(values) if values else float("nan")

    new, old = trees
    print(
        f"load average before {before[0]:.2f} {before[1]:.2f}, after {after[0]:.2f} {after[1]:.2f}"
    )
    print(f"{'episode':>8} {'figure':<14} {new:>12} {old:>12} {'ratio':>7} {'/target':>8}")
    for length in (1000, 10_000):
        a, b = results[(new, length)], results[(old, length)]
        for tree, r in ((new, a), (old, b)):
            if r["failed"]:
                print(
                    f"{length:>8,} {tree}: {len(r['failed'])} loads never settled: {r['failed'][0]}"
                )
        rows = [
            ("TTI p50", median(a["tti"]), median(b["tti"]), TTI_TARGET_MS),
            ("TTI max", most(a["tti"]), most(b["tti"]), TTI_TARGET_MS),
            ("key p50", median(a["key"]), median(b["key"]), SCRUB_TARGET_MS),
            ("key p95", p95(a["key"]), p95(b["key"]), SCRUB_TARGET_MS),
            ("seek p50", median(a["seek"]), median(b["seek"]), SCRUB_TARGET_MS),
            ("seek p95", p95(a["seek"]), p95(b["seek"]), SCRUB_TARGET_MS),
        ]
        for name, x, y, target in rows:
            ratio, of_target = x / y, x / target
            print(
                f"{length:>8,} {name:<14} {x:>10.0f}ms {y:>10.0f}ms {ratio:>7.2f} {of_target:>8.2f}"
            )


if __name__ == "__main__":
    sys.exit(main())
