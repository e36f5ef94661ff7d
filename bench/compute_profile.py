"""Side-by-side profile of belief-trace computation on a default-size dreamerv3-torch model.

Run by `python bench/ingest.py --profile` (see its flags). Every row is timed in the same
process, the rows interleaved round by round (the median is printed; in CPU seconds with one
torch thread), so ratios hold on a shared, noisy machine:

- step loop: the reference implementations' way, one episode at a time (its frames encoded
  in one call, then the cell stepped with a batch of one), run on `--before`'s model code
  (a port of the reference's math with the same PyTorch ops);
- filter: encode + `core.observe` on a batch of 16 episodes;
- belief: `compute_traces(--metrics belief)` (the filter plus its statistics);
- full before: `compute_traces` and the model code of a git ref (default `main`), loaded
  from `git show` into modules of their own;
- full after: this tree's `compute_traces` (every metric), and with `--precision bf16` the
  same under bf16 autocast, with its deviation from fp32 per metric;
- bounds: FLOPs per step counted by torch's `FlopCounterMode` (encode + observe, and the
  full trace with its decodes) at the fp32 peak measured in the same run (see `peaks`).
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from beliefscope.replay.base import Episode, EpisodeRef
from beliefscope.rssm import core, formats
from beliefscope.rssm.families import dreamerv3_torch
from beliefscope.rssm.families.params import read_config
from bench import torch_model
from ingest.compute import ComputeOptions, compute_traces, encode_rows, pad_batch, valid_rows

BATCH = 16
LOOP = "step loop, 1 episode at a time"
REPO = Path(__file__).resolve().parents[1]
BEFORE_MODULES = (
    "beliefscope.rssm.dist",
    "beliefscope.rssm.core",
    "beliefscope.rssm.families.dreamerv3_torch",
    "ingest.compute",
)
"""The modules whose `--before` versions the `full before` row runs (in dependency order)."""


def modules_at(ref: str, names: tuple[str, ...]) -> dict[str, ModuleType]:
    """The versions of `names` at git `ref`, each importing the earlier ones at `ref` (the
    rest of the product is this tree's); the checkpoint-format registry is left as it was."""
    saved = {name: sys.modules[name] for name in names if name in sys.modules}
    registry = dict(formats.FORMATS)
    out: dict[str, ModuleType] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                source = subprocess.run(
                    ["git", "show", f"{ref}:{name.replace('.', '/')}.py"],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                path = Path(tmp) / f"{name}.py"
                path.write_text(source)
                spec = importlib.util.spec_from_file_location(name, path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module  # what the later modules import
                spec.loader.exec_module(module)
                out[name] = module
    finally:
        sys.modules.update(saved)
        formats.FORMATS.clear()
        formats.FORMATS.update(registry)
    return out


def episodes(count: int, steps: int, actions: int, seed: int = 0) -> list[Episode]:
    """Random frames and actions: the compute does not depend on what the pixels show."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        is_first = np.zeros(steps, bool)
        is_first[0] = True
        out.append(
            Episode(
                ref=EpisodeRef("bench", Path(f"{i}.npz"), str(i), steps),
                image=rng.integers(0, 256, (steps, 64, 64, 3), dtype=np.uint8),
                action=rng.uniform(-1, 1, (steps, actions)).astype(np.float32),
                reward=rng.normal(size=steps).astype(np.float32),
                is_first=is_first,
                is_last=np.eye(steps, dtype=bool)[-1],
                is_terminal=np.zeros(steps, bool),
            )
        )
    return out


def step_loop(model: Any, observe: Callable[..., object], eps: list[Episode]) -> None:
    """One episode at a time: its frames in one encoder call, then batch-1 cell steps."""
    with torch.inference_mode():
        for ep in eps:
            image = torch.from_numpy(ep.image)[None]  # (1, T, H, W, C)
            embed = model.encode(image)
            is_first = torch.from_numpy(ep.is_first)[None]
            observe(model.cell, embed, torch.from_numpy(ep.action)[None], is_first)


def filter_only(model: Any, eps: list[Episode]) -> None:
    batch = pad_batch(eps)
    with torch.inference_mode():
        rows = valid_rows(batch)
        embed = encode_rows(model, batch, rows, ComputeOptions().frames_on("cpu"))
        core.observe(model.cell, embed, batch.action, batch.is_first)


def best_seconds(run: Callable[[], object], repeats: int = 10) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return best


def peaks() -> tuple[float, float]:
    """Best fp32 GFLOP/s, now, of a 1024^3 matmul (MKL) and of a 4x4 stride-2 convolution,
    256 -> 256 channels, channels-last (oneDNN; no Winograd shortcut at that stride): on AMD
    CPUs MKL's GEMM runs well below the FMA units' rate, which oneDNN's convolutions reach,
    so the bound takes the faster of the two."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    matmul = 2 * 1024**3 / best_seconds(lambda: a @ b) / 1e9
    x = torch.randn(16, 256, 32, 32).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 4, 4).contiguous(memory_format=torch.channels_last)
    flops = 2 * 16 * 16 * 16 * 256 * 256 * 16  # (N, 16, 16) outputs x 256 x 256 x 4 x 4
    conv = flops / best_seconds(lambda: F.conv2d(x, w, stride=2, padding=1)) / 1e9
    return matmul, conv


def flops_per_step(run: Callable[[], object], steps: int) -> float:
    """FLOPs of `run` per step; oneDNN is off meanwhile, as the counter sees only the ATen
    linear and convolution ops (the count is the same whichever kernel runs them)."""
    with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops() / steps


def clock() -> float:
    """CPU seconds of this process when torch runs one thread (other processes on a busy
    machine do not inflate them), else wall seconds."""
    return time.process_time() if torch.get_num_threads() == 1 else time.perf_counter()


def abs_diffs(a: list, b: list) -> dict[str, np.ndarray]:
    """|a - b| per metric over every step of every trace (0 where both are NaN)."""
    out: dict[str, list[np.ndarray]] = {}
    for x, y in zip(a, b, strict=True):
        for name, col in x.metrics.items():
            both = np.isnan(col) & np.isnan(y.metrics[name])
            out.setdefault(name, []).append(np.where(both, 0.0, np.abs(col - y.metrics[name])))
    return {name: np.concatenate(cols) for name, cols in out.items()}


def beyond(a: list, diffs: dict[str, np.ndarray], tol: float = 1e-5) -> int:
    """Step values of `a` that `diffs` puts beyond `tol`, absolute or relative to the value
    (fp32 sums of ~100 nats round at ~1e-5 whatever the kernel)."""
    count = 0
    for name, d in diffs.items():
        value = np.abs(np.concatenate([t.metrics[name] for t in a]))
        count += int((d > tol * (1 + np.nan_to_num(value))).sum())
    return count


def profile(
    *, steps: int, rounds: int, loop_episodes: int, before: str, precision: str
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = torch_model.save(Path(tmp))
        model = torch_model.load(path)
        # for the math's FLOPs: the last decoder layer counted as the transposed conv it is,
        # not as the sub-pixel conv (2.25x the FLOPs, 0.45 of the time) that runs it
        counted = torch_model.load(path)
        counted.dec_out = None
        old = None
        if before:
            mods = modules_at(before, BEFORE_MODULES)
            config, config_file = read_config([path.parent], dreamerv3_torch.CONFIG_NAMES)
            raw = torch.load(path, map_location="cpu", weights_only=True)
            family = mods["beliefscope.rssm.families.dreamerv3_torch"]
            old = (
                family.build(raw, path, config, config_file),
                mods["ingest.compute"],
                mods["beliefscope.rssm.core"].observe,
            )
    eps = episodes(BATCH, steps, model.spec.action_dim)
    batch = pad_batch(eps)
    total = BATCH * steps
    # the reference's way with the reference's kernels: `--before`'s port of its math
    loop_model, loop_observe = (model, core.observe) if old is None else (old[0], old[2])
    rows: dict[str, tuple[Callable[[], object], int]] = {
        LOOP: (lambda: step_loop(loop_model, loop_observe, eps[:loop_episodes]), 0),
        f"filter, batch {BATCH}": (lambda: filter_only(model, eps), total),
        "--metrics belief": (
            lambda: compute_traces(model, batch, ComputeOptions(metrics="belief")),
            total,
        ),
    }
    if old is not None:
        old_model, old_compute, _ = old
        rows[f"full, {before}"] = (lambda: old_compute.compute_traces(old_model, batch), total)
    rows["full, this tree"] = (lambda: compute_traces(model, batch), total)
    if precision == "bf16":
        bf16 = ComputeOptions(precision="bf16")
        rows["full, bf16 autocast"] = (lambda: compute_traces(model, batch, bf16), total)
    times: dict[str, list[float]] = {name: [] for name in rows}
    for run, _ in rows.values():  # warm-up: first-call allocations and kernel choice
        run()
    for _ in range(rounds):
        for name, (run, _) in rows.items():
            began = clock()
            run()
            times[name].append(clock() - began)
    loop_steps = loop_episodes * steps
    rates = {
        name: (n or loop_steps) / statistics.median(times[name]) for name, (_, n) in rows.items()
    }
    matmul, conv = peaks()
    peak = max(matmul, conv)
    one = pad_batch(eps[:2])
    filter_flops = flops_per_step(lambda: filter_only(counted, eps[:2]), 2 * steps)
    full_flops = flops_per_step(lambda: compute_traces(counted, one), 2 * steps)
    results = {f"{name} steps/s": rate for name, rate in rates.items()}
    results |= {
        "matmul_gflops": matmul,
        "conv_gflops": conv,
        "peak_gflops": peak,
        "filter_mflop_per_step": filter_flops / 1e6,
        "full_mflop_per_step": full_flops / 1e6,
        "filter_bound_steps_per_s": peak * 1e9 / filter_flops,
        "full_bound_steps_per_s": peak * 1e9 / full_flops,
    }
    _print(results, rates, before)
    if old is not None:
        before_traces = old[1].compute_traces(old[0], batch)
        diffs = abs_diffs(before_traces, compute_traces(model, batch))
        name, worst = max(((k, float(d.max())) for k, d in diffs.items()), key=lambda kv: kv[1])
        scale = max(float(np.nanmax(np.abs(t.metrics[name]))) for t in before_traces)
        over = beyond(before_traces, diffs)
        print(
            f"this tree vs {before}: max |diff| {worst:.1e} over every metric (target <= 1e-5), "
            f"in {name}, whose values reach {scale:.3g} ({worst / scale:.1e} of that); "
            f"{over} of {sum(d.size for d in diffs.values())} step values differ by more "
            "than 1e-5 absolute and relative"
        )
        results["max_abs_diff_vs_before"] = worst
    if precision == "bf16":
        diffs = abs_diffs(compute_traces(model, batch), compute_traces(model, batch, bf16))
        print("bf16 vs fp32 per metric, max / median |diff|:")
        for name, d in diffs.items():
            print(f"  {name:16s} {d.max():.1e} / {np.median(d):.1e}")
            results[f"bf16_max_abs_diff_{name}"] = float(d.max())
            results[f"bf16_median_abs_diff_{name}"] = float(np.median(d))
    return results


def _print(results: dict[str, float], rates: dict[str, float], before: str) -> None:
    loop = rates[LOOP]
    filt = rates[f"filter, batch {BATCH}"]
    full = rates["full, this tree"]
    filter_bound = results["filter_bound_steps_per_s"]
    full_bound = results["full_bound_steps_per_s"]
    print("| path | steps/s |")
    print("|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} |")
    print(
        f"| FLOP bound of encode + observe ({results['filter_mflop_per_step']:.0f} MFLOP/step at "
        f"{results['peak_gflops']:.0f} GFLOP/s, the best of fp32 matmul "
        f"{results['matmul_gflops']:.0f} and conv {results['conv_gflops']:.0f}) "
        f"| {filter_bound:,.0f} |"
    )
    print(
        f"| FLOP bound of the full trace ({results['full_mflop_per_step']:.0f} MFLOP/step) "
        f"| {full_bound:,.0f} |"
    )
    belief = rates["--metrics belief"]
    print(
        f"filter: {filt / loop:.1f}x the step loop (target >= 4x), {filt / filter_bound:.2f} of "
        f"its bound (target >= 0.6); belief: {belief / loop:.1f}x the step loop, "
        f"{belief / filter_bound:.2f} of the bound"
    )
    line = f"full: {full / full_bound:.2f} of its bound (target >= 0.5)"
    if f"full, {before}" in rates:
        line += f", {full / rates[f'full, {before}']:.2f}x {before}'s (target >= 2.5x)"
    print(line, flush=True)
