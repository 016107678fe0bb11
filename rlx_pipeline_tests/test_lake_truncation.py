"""A lake day cut short, through Dagster on a simulated day: the acquisition checks name the missing hours
(RLX_LAKE_MIN_HOURS) and fail a table that starts late or ends early while the others go on."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rlx_pipeline.orchestration.assets import acquisition
from rlx_pipeline.orchestration.resources import build_resources
from rlx_pipeline.settings import Settings
from rlx_pipeline.simulator import SimConfig, simulate
from rlx_pipeline_tests.conftest import DATE, PARTITION_KEY, SYMBOL

H = 3_600_000_000_000
STRETCH = 118  # 90 s of simulated market spread over 3 hours (00:00-02:57): hours without simulating them
T0 = 1_723_161_600_000_000_000  # 2024-08-09T00:00:00Z


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    # `book` rows every 0.5 s: 59 s apart once stretched, like Crypto Lake's seconds apart before it
    config = SimConfig(
        symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=90, seed=21, book_snapshot_every_s=0.5
    )
    truth = simulate(config)
    out = {}
    for name, t in truth.lake_tables().items():
        for col in ("timestamp", "receipt_timestamp"):
            stretched = pc.add(pc.multiply(pc.subtract(t[col], T0), STRETCH), T0)
            t = t.set_column(t.schema.get_field_index(col), col, stretched)
        out[name] = t
    return out


def _cut(t: pa.Table, lo_ns: int | None = None, hi_ns: int | None = None) -> pa.Table:
    keep = pc.and_(
        pc.greater_equal(t["timestamp"], T0 + (lo_ns or 0)),
        pc.less(t["timestamp"], T0 + (hi_ns if hi_ns is not None else 24 * H)),
    )
    return t.filter(keep)


def _run(tmp_path, tables: dict[str, pa.Table]) -> dict[str, dg.AssetCheckEvaluation]:
    from rlx_pipeline.simulator import render

    settings = Settings.from_env({"RLX_DATA_DIR": str(tmp_path / "data"), "RLX_LAKE_MIN_HOURS": "3"})
    truth_market = simulate(SimConfig(symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=1, seed=1)).market
    render.write_lake(truth_market, settings.lake_root, tables=tables)
    result = dg.materialize(
        acquisition.assets + acquisition.checks,
        partition_key=PARTITION_KEY,
        resources=build_resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _findings(ev: dg.AssetCheckEvaluation) -> str:
    return ev.description or ""


def test_a_whole_three_hour_day_passes_with_three_hours_required(tmp_path, tables):
    checks = _run(tmp_path, tables)
    assert {k: v.passed for k, v in checks.items()} == {
        "lake_trades_ok": True,
        "lake_book_ok": True,
        "lake_book_delta_ok": True,
    }
    report = checks["lake_book_delta_ok"].metadata["report"].value
    assert (
        "| hours_covered | 3 | >= 3 of 24 UTC hours (RLX_LAKE_MIN_HOURS) | ok | hours (UTC) without a row: 03-23 |"
        in report
    )
    assert "| not_truncated |" in report and "| ok | book_delta spans 00:00:" in report


@pytest.mark.parametrize(
    ("lo", "hi", "missing_hours", "truncation"),
    [
        (None, int(1.5 * H), "02-23", "ends {} s early (01:29:"),  # cut at the end
        (int(1.5 * H), None, "00, 03-23", "starts {} s late (01:30:"),  # cut at the start
    ],
)
@pytest.mark.parametrize(
    ("cut_tables", "failing"),
    [(("book_delta_v2",), "lake_book_delta_ok"), (("book", "book_delta_v2"), "lake_book_ok")],
)
def test_book_tables_cut_short_fail_with_the_missing_hours_named(
    tmp_path, tables, lo, hi, missing_hours, truncation, cut_tables, failing
):
    """book (and book_delta) cut halfway, trades whole: the first check of a cut table fails (a failed lake_book
    blocks lake_book_delta in the same run), naming the hours without a row and the span missing."""
    checks = _run(tmp_path, {k: _cut(t, lo, hi) if k in cut_tables else t for k, t in tables.items()})
    assert checks["lake_trades_ok"].passed
    assert not checks[failing].passed
    assert all(v.passed for k, v in checks.items() if k not in (failing,))
    desc = _findings(checks[failing])
    assert (
        f"hours_covered=2 (limit >= 3 of 24 UTC hours (RLX_LAKE_MIN_HOURS)) hours (UTC) without a row: {missing_hours}"
        in desc
    )
    if failing == "lake_book_delta_ok":  # staged after book and trades: compared with both
        seconds = int(checks[failing].metadata["not_truncated"].value + 0.5)
        assert "book_delta " + truncation.format(seconds) in desc and "missing " in desc, desc


@pytest.mark.parametrize("table", ["trades", "book"])
def test_a_table_ending_early_fails_even_when_every_hour_has_rows(tmp_path, tables, table):
    """20 minutes missing at the end of one table: every hour still has rows, the other tables go on. Whichever
    check sees it first fails (its own, if a peer was staged before it; else lake_book_delta_ok, staged last,
    which judges every table of the day), naming the table and the span."""
    checks = _run(tmp_path, dict(tables, **{table: _cut(tables[table], None, int(2 * H + 40 * 60e9))}))
    failed = [k for k, v in checks.items() if not v.passed]
    assert len(failed) == 1 and failed[0] in (f"lake_{table}_ok", "lake_book_delta_ok"), checks
    desc = _findings(checks[failed[0]])
    assert "hours_covered" not in desc
    assert f"{table} ends " in desc and "s early (02:39:" in desc and "missing 02:39:" in desc, desc


def test_the_tolerance_follows_a_sparse_tables_own_spacing():
    from rlx_pipeline.lake.quality import extent_findings

    others = {"trades": (T0, T0 + 24 * H - 1, 10**6)}
    # 25 book rows an hour apart ending 40 min early: within 3 spacings, not truncated
    (f,) = extent_findings("book", {**others, "book": (T0, T0 + 24 * H - 40 * 60 * 10**9, 25)})
    assert f.passed and f.limit.startswith("<= 10500 s")  # 3 x (23 h 20 min / 24)
    # dense rows (every second) ending 40 min early: truncated, the span named
    (f,) = extent_findings("book", {**others, "book": (T0, T0 + 24 * H - 40 * 60 * 10**9, 86_400)})
    assert not f.passed and f.limit.startswith("<= 300 s") and "missing 23:20:00-23:59:59" in f.detail
    # nothing to compare with: reported, not a pass by default of a measurement
    (f,) = extent_findings("book", {"book": (T0, T0 + H, 10)})
    assert f.passed and f.detail.startswith("book not compared")
