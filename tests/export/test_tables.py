"""`beliefscope export traces|flags` to CSV and Parquet: every value (NaN, +/-inf, absent)
survives, filters select what they say, output streams in bounded batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from beliefscope.cli import main
from beliefscope.export.selection import Filters
from beliefscope.export.tables import TRACE_SCHEMA, trace_batches
from beliefscope.store.engine import Store
from beliefscope.values.traces import METRICS
from tests.export.conftest import ABSENT, Written, seed_store


def read(path: Path) -> pd.DataFrame:
    """Read back with pyarrow, which keeps `nan` (a float) apart from empty (null)."""
    table = pq.read_table(path) if path.suffix == ".parquet" else pa_csv.read_csv(path)
    return table.to_pandas()


def check_rows(frame: pd.DataFrame, written: Written, trace_ids: list[int]) -> None:
    """The frame holds exactly these traces' steps, in order, with every value as written."""
    expected_rows = sum(len(written.traces[i][6]["kl"]) for i in trace_ids)
    assert len(frame) == expected_rows
    offset = 0
    for trace_id in trace_ids:
        run, step, ckpt, episode, key, variant, metrics = written.traces[trace_id]
        n = len(metrics["kl"])
        part = frame.iloc[offset : offset + n]
        offset += n
        assert (part["run"] == run).all() and (part["checkpoint_step"] == step).all()
        assert (part["checkpoint"] == ckpt).all() and (part["episode_id"] == episode).all()
        assert (part["episode_key"] == key).all() and (part["variant"] == variant).all()
        assert (part["posterior"] == "mode").all()
        assert part["t"].tolist() == list(range(n))
        for name in METRICS:
            if name == ABSENT:
                assert part[name].isna().all(), "an absent metric must be empty, not a number"
                continue
            got = part[name].to_numpy(np.float64)
            np.testing.assert_array_equal(got, metrics[name], err_msg=name)  # NaN == NaN here


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_every_value_round_trips(tmp_path: Path, store: Store, seeded: Written, fmt: str) -> None:
    out = tmp_path / f"traces.{fmt}"
    url = store.url
    assert main(["export", "traces", "--store", url, "--format", fmt, "--out", str(out)]) == 0
    frame = read(out)
    assert list(frame.columns) == TRACE_SCHEMA.names
    assert list(frame.columns)[8:] == list(METRICS)  # every metric under its own name
    check_rows(frame, seeded, sorted(seeded.traces))
    assert np.isposinf(frame["correction"]).any() and np.isneginf(frame["correction"]).any()


def test_csv_writes_nan_inf_and_absent_distinctly(tmp_path: Path, store: Store, seeded) -> None:
    out = tmp_path / "t.csv"
    main(
        [
            "export",
            "traces",
            "--store",
            store.url,
            "--out",
            str(out),
            "--run",
            "alpha",
            "--checkpoint",
            "100",
            "--episode",
            "native:replay/alpha-ep0.npz",
            "--variant",
            "filter",
        ]
    )
    header, first, second, third = out.read_text().splitlines()[:4]
    columns = [c.strip('"') for c in header.split(",")]
    row1, row2, row3 = (line.split(",") for line in (first, second, third))
    assert row1[columns.index(ABSENT)] == ""  # not computed: empty
    assert row2[columns.index("kl")] == "nan"
    assert row3[columns.index("correction")] == "inf"


def test_filters(tmp_path: Path, store: Store, seeded: Written) -> None:
    def ids(**where: object) -> list[int]:
        return sorted(
            i
            for i, (run, step, ckpt, ep, key, variant, _) in seeded.traces.items()
            if all(
                {"run": run, "step": step, "ckpt": ckpt, "ep": ep, "key": key, "variant": variant}[
                    k
                ]
                == v
                for k, v in where.items()
            )
        )

    def export(*flags: str) -> pd.DataFrame:
        out = tmp_path / "f.parquet"
        assert main(["export", "traces", "--store", store.url, "--out", str(out), *flags]) == 0
        return read(out)

    check_rows(export("--run", "alpha"), seeded, ids(run="alpha"))
    check_rows(export("--checkpoint", "200"), seeded, ids(step=200))
    alpha_200 = ids(run="alpha", step=200)
    ckpt_id = seeded.traces[alpha_200[0]][2]
    # a bare number that is no checkpoint's step is an id; id:N says so explicitly
    assert ckpt_id not in (100, 200)
    check_rows(export("--checkpoint", str(ckpt_id)), seeded, alpha_200)
    check_rows(export("--checkpoint", f"id:{ckpt_id}"), seeded, alpha_200)
    key = "native:replay/beta-ep1.npz"
    check_rows(
        export("--episode", key, "--variant", "openloop:3"),
        seeded,
        ids(key=key, variant="openloop:3"),
    )
    episode_id = seeded.traces[ids(key=key)[0]][3]
    check_rows(export("--run", "beta", "--episode", str(episode_id)), seeded, ids(key=key))


def test_no_match_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, store: Store, seeded, capsys
) -> None:
    out = tmp_path / "none.csv"
    assert (
        main(["export", "traces", "--store", store.url, "--out", str(out), "--probe", "nope"]) == 2
    )
    err = capsys.readouterr().err  # the old spelling still works, with a note
    assert "--probe is deprecated, use --variant" in err
    assert "no stored traces match --variant nope" in err
    assert not out.exists() and not list(tmp_path.glob(".none.csv*"))
    assert (
        main(["export", "traces", "--store", store.url, "--out", str(out), "--run", "gamma"]) == 2
    )
    assert "no run named 'gamma'" in capsys.readouterr().err
    assert main(["export", "traces", "--store", store.url, "--out", str(tmp_path / "x.txt")]) == 2
    assert "give --format csv|parquet" in capsys.readouterr().err


def test_streams_in_bounded_batches(store: Store) -> None:
    written = seed_store(store, lengths=(23, 9, 31))
    batches = list(trace_batches(store, Filters(run="alpha"), batch_rows=10))
    assert all(b.num_rows <= 10 for b in batches)
    assert sum(b.num_rows for b in batches) == 2 * 2 * (23 + 9 + 31)
    frame = pd.concat([b.to_pandas() for b in batches], ignore_index=True)
    check_rows(frame, written, sorted(i for i, v in written.traces.items() if v[0] == "alpha"))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_flags_export(tmp_path: Path, store: Store, seeded: Written, fmt: str) -> None:
    alpha = sorted(i for i, v in seeded.traces.items() if v[0] == "alpha" and v[5] == "filter")
    made = [
        store.reviews.create_manual_flag(
            trace_id=trace,
            t0=0,
            t1=3,
            who="tester",
            category="occlusion",
            tags=["box", "late"],
            notes='hidden box, comma, "quoted"',
        )
        for trace in alpha
    ]
    store.reviews.review_flag(flag_id=made[0].id, who="tester", state="confirmed")
    out = tmp_path / f"flags.{fmt}"
    assert main(["export", "flags", "--store", store.url, "--out", str(out), "--run", "alpha"]) == 0
    frame = read(out).sort_values("flag", ignore_index=True)
    assert frame["flag"].tolist() == [f.id for f in made]
    assert frame["state"].tolist() == ["confirmed"] + ["open"] * (len(made) - 1)
    assert set(frame["tags"]) == {"box;late"} and set(frame["category"]) == {"occlusion"}
    assert set(frame["notes"]) == {'hidden box, comma, "quoted"'}
    assert frame["episode_key"].tolist() == [seeded.traces[t][4] for t in alpha]
    assert frame["checkpoint_step"].tolist() == [seeded.traces[t][1] for t in alpha]
    assert (frame["t0"] == 0).all() and (frame["t1"] == 3).all()
    # peak of a manual flag: the largest finite KL over its span (t=1 is NaN)
    for row, trace in zip(frame.itertuples(), alpha, strict=True):
        kl = seeded.traces[trace][6]["kl"][:4]
        assert row.peak == pytest.approx(np.nanmax(kl))
    out2 = tmp_path / f"beta.{fmt}"
    assert main(["export", "flags", "--store", store.url, "--out", str(out2), "--run", "beta"]) == 2
    assert not out2.exists()
