"""`beliefscope export wandb`: an offline W&B run per Beliefscope run, no network. Its
transaction log, read back with wandb's own protobuf records, holds every per-step value
against the custom x axis `t`, and its flags table holds the run's flags."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from beliefscope.cli import main
from beliefscope.store.engine import Store
from tests.export.conftest import ABSENT, Written
from tests.export.wandb_log import read_records


def history(run_dir: Path) -> list[dict[str, object]]:
    (log,) = run_dir.glob("run-*.wandb")
    rows = []
    for record in read_records(log):
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {
                    "/".join(i.nested_key) or i.key: json.loads(i.value_json)
                    for i in record.history.item
                }
            )
    return rows


def test_offline_run_holds_series_and_flags(tmp_path: Path, store: Store, seeded: Written) -> None:
    alpha = sorted(i for i, v in seeded.traces.items() if v[0] == "alpha")
    flag = store.reviews.create_manual_flag(
        trace_id=alpha[0], t0=1, t1=2, who="tester", category="slip", notes="look"
    )
    out = tmp_path / "wandb-export"
    assert main(["export", "wandb", "--store", store.url, "--out", str(out), "--run", "alpha"]) == 0
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    rows = history(run_dir)
    # the tables' rows carry t too (and their media as `traces/...` keys): keep series rows
    series = [r for r in rows if any(k.startswith("step-") for k in r)]
    assert len(series) == sum(len(seeded.traces[i][6]["kl"]) for i in alpha)
    by_key: dict[str, dict[int, float]] = {}
    for row in series:
        for key, value in row.items():
            if key.startswith("step-"):
                by_key.setdefault(key, {})[int(row["t"])] = value  # type: ignore[arg-type]
    for trace_id in alpha:
        _, step, _, episode, _, variant, metrics = seeded.traces[trace_id]
        prefix = f"step-{step}/episode-{episode}/{variant}"
        assert f"{prefix}/{ABSENT}" not in by_key
        for name, values in metrics.items():
            got = by_key[f"{prefix}/{name}"]
            assert sorted(got) == list(range(len(values)))
            for t, expected in enumerate(values):
                value = float(got[t])  # JSON "NaN" / "Infinity" parse to floats
                assert value == expected or (math.isnan(value) and math.isnan(expected)), (
                    prefix,
                    name,
                    t,
                )
    metric_records = [
        r for r in read_records(next(run_dir.glob("run-*.wandb"))) if r.HasField("metric")
    ]
    assert any(r.metric.glob_name == "*" and r.metric.step_metric == "t" for r in metric_records)
    (flags_file,) = run_dir.glob("files/media/table/flags_*.table.json")
    table = json.loads(flags_file.read_text())
    columns = table["columns"]
    (row,) = table["data"]
    got = dict(zip(columns, row, strict=True))
    assert (got["flag"], got["t0"], got["t1"], got["category"], got["notes"]) == (
        flag.id,
        1,
        2,
        "slip",
        "look",
    )
    (traces_file,) = run_dir.glob("files/media/table/traces_*.table.json")
    assert len(json.loads(traces_file.read_text())["data"]) == len(alpha)
    assert not list(out.glob("wandb/run-*")), "offline only: no online run directory"
    assert np.all([r.get("_step") is not None for r in rows])
