"""The day validation over tables written with the contract schemas: a clean day passes with D = 0, each fault
fails exactly its check, the verdict gates reconstruction, streaming and resume give the same result."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from rlx_pipeline import gate
from rlx_pipeline.settings import Thresholds
from rlx_pipeline.validation import scan, validate_day, write_report
from rlx_pipeline.validation.day import day_start_ns, inputs_for
from rlx_pipeline_tests.validation_fixtures import NS, Day, build, write_day

TH = Thresholds()
DAY = Day()


def _status(v) -> dict[str, bool]:
    return {c.name: c.passed for c in v.checks}


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "scan"}


def test_clean_day_passes_every_check_with_zero_distance(layout):
    data = write_day(layout)
    v = validate_day(layout, DAY.date, DAY.symbol, TH)
    assert _status(v) == {"origin_time": True, "gaps": True, "ks": True, "tail": True}
    assert v.covered_minutes == 60
    assert {k.metric: k.d for k in v.ks} == {
        "trade_size": 0.0,
        "inter_arrival_ms": 0.0,
        "log_return_1s": 0.0,
        "levels_per_message": 0.0,
    }
    assert v.scan["lake_trade_rows"] == len(data["trades"]["trade_id"])
    assert v.scan["lake_delta_messages"] == len(data["u"])
    size = next(k for k in v.ks if k.metric == "trade_size")
    assert size.n_hist == size.n_golden == v.scan["golden_trades"] == v.scan["lake_trade_rows_compared"]
    assert v.gaps["lake_missing_messages"] == 0 and v.gaps["golden_depth_messages"] > 0
    assert v.gaps["trade_ids_missing"] == v.gaps["trade_ids_duplicated"] == 0
    assert v.tails["lake"].alpha == v.tails["golden"].alpha
    assert v.origin["trades"]["latency_ms"]["min"] >= 1.0


def test_shifted_sizes_fail_ks_only_with_scipys_exact_d(layout):
    def shift(data):
        data["trades"]["quantity"] = data["trades"]["quantity"] * 16 // 10

    write_day(layout, mutate=shift)
    v = validate_day(layout, DAY.date, DAY.symbol, TH)
    assert _status(v) == {"origin_time": True, "gaps": True, "ks": False, "tail": True}
    assert v.check("ks").detail.endswith("over the threshold: trade_size")
    # the same D as scipy on the raw columns of the covered minutes
    lo = int(np.datetime64(f"{DAY.date}T01:00:00", "ns").astype(np.int64))
    lake = (
        pl.read_parquet(layout.staged("trades", DAY.date, DAY.symbol))
        .filter(pl.col("origin_time").cast(pl.Int64).is_between(lo, lo + 3600 * NS - 1))["quantity"]
        .to_numpy()
    )
    golden = pl.read_parquet(layout.golden("trades", DAY.date, DAY.symbol))["quantity"].to_numpy()
    d = next(k.d for k in v.ks if k.metric == "trade_size")
    assert d == sps.ks_2samp(lake / 1e8, golden / 1e8).statistic
    assert d > TH.ks_d_max


def test_a_dropped_delta_message_is_a_gap(layout):
    data = build(DAY)
    gone = int(data["u"][len(data["u"]) // 2])  # middle of the day: inside the golden window
    write_day(layout, drop_u=[gone])
    v = validate_day(layout, DAY.date, DAY.symbol, TH)
    # one vendor-typical gap passes at the default threshold: reconstruction flags it (handed every lost id)
    assert _status(v) == {"origin_time": True, "gaps": True, "ks": True, "tail": True}
    assert v.gaps["lake_missing_messages"] == 1
    assert v.gaps["first_missing_update_ids"] == v.gaps["missing_update_ids"] == [gone]
    assert v.gaps["rates"]["depth_messages"] == 1 / v.gaps["golden_depth_messages"]
    strict = validate_day(layout, DAY.date, DAY.symbol, Thresholds(gap_rate_max=0.0))
    assert _status(strict)["gaps"] is False


def _cut_lake(lo_min: int | None = None, hi_min: int | None = None):
    """The lake day (trades and deltas) without its rows before ``lo_min`` / from ``hi_min`` on (minutes)."""

    def cut(data):
        lo = scan.NS * 60 * (lo_min or 0) + int(np.datetime64(f"{DAY.date}T00:00:00", "ns").astype(np.int64))
        hi = lo - scan.NS * 60 * (lo_min or 0) + scan.NS * 60 * (hi_min if hi_min is not None else 1440)
        keep = (data["trades"]["origin_time"] >= lo) & (data["trades"]["origin_time"] < hi)
        data["trades"] = {k: np.asarray(v)[keep] for k, v in data["trades"].items()}
        keep = (data["msg_t"] >= lo) & (data["msg_t"] < hi)
        for k in ("msg_t", "u", "first_u", "levels"):
            data[k] = data[k][keep]

    return cut


@pytest.mark.parametrize(
    ("lo_min", "hi_min", "where", "hours"),
    [(None, 90, "after_lake_end", "01"), (90, None, "before_lake_start", "01"), (30, 61, None, "01")],
)
def test_a_lake_cut_short_inside_the_golden_window_is_a_gap(layout, lo_min, hi_min, where, hours):
    """The golden minutes are 01:00-02:00: a lake day that ends at 01:30 or starts at 01:30 lacks golden update ids
    and trade ids outside its own id range, counted all the same, with the hour named."""
    data = write_day(layout, mutate=_cut_lake(lo_min, hi_min))
    v = validate_day(layout, DAY.date, DAY.symbol, TH)
    assert _status(v) == {
        "origin_time": True,
        "gaps": False,
        "ks": v.check("ks").passed,
        "tail": v.check("tail").passed,
    }
    cov = v.gaps["golden_coverage"]
    gone = cov["depth"]["missing"]
    assert gone > 0 and cov["depth"]["inside_lake_range"] == 0
    if where:
        assert cov["depth"][where] == gone
    assert cov["trades"]["missing"] > 0
    assert cov["missing_hours"] == hours
    assert v.gaps["rates"]["depth_messages"] == gone / cov["depth"]["golden"]
    assert cov["depth"]["golden"] == v.gaps["golden_depth_messages"]
    assert f"hours with losses (UTC): {hours}" in v.check("gaps").detail
    # the lake's own id ranges have no hole: only the golden comparison sees the loss
    assert v.gaps["trade_ids_missing"] == 0 and v.gaps["rates"]["trade_ids"] == 0
    assert len(data["u"]) > 0


def test_duplicated_and_missing_trade_ids_are_gaps(layout):
    def dup(data):
        ids = data["trades"]["trade_id"]
        ids[10] = ids[9]  # id 9 twice, id 10 missing

    write_day(layout, mutate=dup)
    v = validate_day(layout, DAY.date, DAY.symbol, TH)
    assert _status(v)["gaps"] is False
    assert (v.gaps["trade_ids_missing"], v.gaps["trade_ids_duplicated"]) == (1, 1)
    assert v.gaps["missing_trade_id_ranges"] == [[1_000_010, 1_000_010]]


def test_bad_origin_times_fail_origin_time_only(layout):
    def bad(data):
        t = data["trades"]["origin_time"]
        t[100:120] = t[100:120] - 3 * 86_400 * NS  # out of day, and backwards at 100

    write_day(layout, mutate=bad)
    v = validate_day(layout, DAY.date, DAY.symbol, TH)
    assert _status(v) == {"origin_time": False, "gaps": True, "ks": True, "tail": True}
    o = v.origin["trades"]
    assert (o["out_of_day"], o["backwards"], o["null"], o["zero"]) == (20, 1, 0, 0)
    assert v.check("origin_time").value == pytest.approx(21 / o["rows"])


def test_without_golden_samples_nothing_unchecked_reads_passed(layout):
    write_day(layout, golden=False)
    v = validate_day(layout, DAY.date, DAY.symbol, TH)
    # the verdict: the checks that measured decide; the unchecked ones never read passed and are recorded apart
    assert v.passed and v.window_ns is None
    assert v.failed == [] and v.not_checked == ["ks", "tail"]
    for name in ("ks", "tail"):
        c = v.check(name)
        assert (c.checked, c.passed, c.status) == (False, False, "not_checked")
        assert "no golden samples" in c.detail
    assert v.check("gaps").status == v.check("origin_time").status == "passed"
    write_report(layout, v)
    verdict = gate.require_passed(layout, DAY.date, DAY.symbol)
    assert verdict.passed and verdict.not_checked == ["validation_ks", "validation_tail"]
    strict = validate_day(layout, DAY.date, DAY.symbol, TH, require_golden=True)
    assert strict.failed == ["ks", "tail"] and strict.not_checked == []
    assert {c.name: c.status for c in strict.checks}["ks"] == "failed"
    write_report(layout, strict)
    with pytest.raises(gate.GateClosed, match="validation_ks, validation_tail"):
        gate.require_passed(layout, DAY.date, DAY.symbol)


def test_report_files_and_a_failing_verdict_block(layout):
    write_day(layout, drop_u=[])
    paths = write_report(layout, validate_day(layout, DAY.date, DAY.symbol, TH))
    assert gate.require_passed(layout, DAY.date, DAY.symbol).passed
    for name in ("json", "md", "ecdf", "tail", "gaps", "verdict"):
        assert paths[name].is_file() and paths[name].stat().st_size > 0
    assert paths["ecdf"].read_bytes()[:4] == b"\x89PNG"
    report = json.loads(paths["json"].read_text())
    assert report["passed"] and len(report["ks"]) == 4
    assert "| ks | passed |" in paths["md"].read_text()

    def shift(data):
        data["trades"]["quantity"] = data["trades"]["quantity"] * 3

    write_day(layout, mutate=shift)
    write_report(layout, validate_day(layout, DAY.date, DAY.symbol, TH))
    with pytest.raises(gate.GateClosed, match="validation_ks"):
        gate.require_passed(layout, DAY.date, DAY.symbol)
    assert gate.require_passed(layout, DAY.date, DAY.symbol, override=True).passed is False


def test_results_do_not_depend_on_batch_boundaries(layout, monkeypatch):
    write_day(layout, Day(row_group=50_000, delta_row_group=500_000))
    whole = validate_day(layout, DAY.date, DAY.symbol, TH).to_dict()
    monkeypatch.setattr(scan, "BATCH_ROWS", 97)  # messages, seconds and id runs cut everywhere
    cut = validate_day(layout, DAY.date, DAY.symbol, TH).to_dict()
    assert _strip(cut) == _strip(whole)


def test_an_interrupted_validation_resumes_to_the_same_result(layout):
    write_day(layout)
    reference = validate_day(layout, DAY.date, DAY.symbol, TH, resume=False).to_dict()
    ckpt = layout.checkpoint_dir("validation", DAY.date, DAY.symbol) / "state.npz"

    class Stop(Exception):
        pass

    def stop_in(phase: str, at: int):
        def progress(p: str, done: int, total: int) -> None:
            if p == phase and done == at:
                raise Stop

        return progress

    for phase in ("lake_trades", "lake_delta"):
        with pytest.raises(Stop):
            validate_day(layout, DAY.date, DAY.symbol, TH, checkpoint_every_s=0, progress=stop_in(phase, 3))
        assert ckpt.is_file()
        resumed = validate_day(layout, DAY.date, DAY.symbol, TH, checkpoint_every_s=0)
        assert resumed.scan["resumed_from"] == f"{phase} row group 3"
        assert _strip(resumed.to_dict()) == _strip(reference)
        assert not ckpt.exists()


def test_a_checkpoint_of_other_inputs_is_ignored(layout):
    write_day(layout)
    with pytest.raises(RuntimeError):

        def boom(p, done, total):
            if p == "lake_delta":
                raise RuntimeError

        validate_day(layout, DAY.date, DAY.symbol, TH, checkpoint_every_s=0, progress=boom)
    write_day(layout, Day(seed=4))  # the day was re-staged: different files
    v = validate_day(layout, DAY.date, DAY.symbol, TH, checkpoint_every_s=0)
    assert v.scan["resumed_from"] is None
    assert v.origin["trades"]["latency_ms"]["p50"] == pytest.approx(25, abs=1.0)


def test_golden_trade_ids_the_lake_lacks_are_found_as_golden_is_read(layout):
    """Lake trades are scanned first, so each golden batch is checked against them as it is read: the golden ids
    are held as runs (one here) and only the ids the lake lacks are kept, with their times. Same figures as the
    set of every golden id, in one pass and resumed inside the golden phase."""
    day = Day(row_group=500)
    dropped: list[int] = []

    def drop(data):
        tr = data["trades"]
        minute = (tr["origin_time"] - day_start_ns(day.date)) // (60 * NS)
        gone = np.r_[np.flatnonzero(minute == 70)[:25], np.flatnonzero(minute == 95)[[0, 7, 9]]]
        dropped.extend(tr["trade_id"][gone].tolist())
        keep = np.ones(len(tr["trade_id"]), bool)
        keep[gone] = False
        data["trades"] = {k: v[keep] for k, v in tr.items()}

    data = build(day)
    write_day(layout, day, mutate=drop)
    golden = pl.read_parquet(layout.golden("trades", day.date, day.symbol))
    times = dict(
        zip(golden["trade_id"].to_list(), golden["trade_time"].cast(pl.Int64).to_list(), strict=True)
    )
    reference = validate_day(layout, day.date, day.symbol, TH, resume=False)
    cov = reference.gaps["golden_coverage"]["trades"]
    assert cov == {"golden": golden.height, "missing": 28, "first_missing_trade_ids": sorted(dropped)[:20]}
    assert reference.gaps["missing_update_id_times_ns"] == [times[i] for i in sorted(dropped)]
    assert len(data["trades"]["trade_id"]) == len(dropped) + reference.scan["lake_trade_rows"]

    ins = inputs_for(layout, day.date, day.symbol)
    s = scan.scan_day(ins, day_start_ns(day.date), tol_ns=60 * NS)
    assert (s.golden_trades.runs.starts.size, s.golden_trades.runs.unique) == (1, golden.height)
    assert sorted(s.golden_trades.missing_ids.tolist()) == sorted(dropped)

    class Stop(Exception):
        pass

    def stop(p: str, done: int, total: int) -> None:
        if p == "golden_trades" and done == 3:
            raise Stop

    with pytest.raises(Stop):
        validate_day(layout, day.date, day.symbol, TH, checkpoint_every_s=0, progress=stop)
    resumed = validate_day(layout, day.date, day.symbol, TH, checkpoint_every_s=0)
    assert resumed.scan["resumed_from"] == "golden_trades row group 3"
    assert _strip(resumed.to_dict()) == _strip(reference.to_dict())


def test_golden_depth_coverage_range_by_range(layout, monkeypatch):
    """Golden depth messages the lake lacks are found range of update ids by range after the scans: a message the
    golden capture lost (one of its own breaks), one captured twice (counted once, its first capture's time), ids
    the lake lacks on both sides of range edges: the figures of the whole sets, whatever the range width. The scan
    keeps no per-message arrays (before: three int64 per golden message until the lake was read)."""
    data = build(DAY)
    minute = (data["msg_t"] - day_start_ns(DAY.date)) // (60 * NS)
    window = np.flatnonzero((minute >= 60) & (minute < 120))
    lost_by_lake = set(data["u"][window[[5, 6, 7, 300, 301, 2000]]].tolist())
    write_day(layout, drop_u=lost_by_lake)
    path = layout.golden("depth", DAY.date, DAY.symbol)
    g = pl.read_parquet(path)
    lost_by_golden, twice = int(data["u"][window[100]]), int(data["u"][window[900]])
    g = pl.concat(
        [g.filter(pl.col("final_update_id") != lost_by_golden), g.filter(pl.col("final_update_id") == twice)]
    )
    g.write_parquet(path, row_group_size=5_000)

    msgs = g.group_by("final_update_id", maintain_order=True).first().sort("final_update_id")
    u, first_u = msgs["final_update_id"].to_numpy(), msgs["first_update_id"].to_numpy()
    missing = sorted(lost_by_lake)
    whole = validate_day(layout, DAY.date, DAY.symbol, TH, resume=False).to_dict()
    depth = whole["gaps"]["golden_coverage"]["depth"]
    assert (whole["scan"]["golden_depth_messages"], depth["golden"]) == (len(u), len(u))
    assert whole["gaps"]["golden_own_breaks"] == int((first_u[1:] != u[:-1] + 1).sum()) == 1
    assert (depth["missing"], depth["missing_update_ids"]) == (len(missing), missing)
    times = dict(zip(u.tolist(), msgs["event_time"].cast(pl.Int64).to_list(), strict=True))
    assert whole["gaps"]["missing_update_id_times_ns"] == [times[x] for x in missing]
    for rows in (3_000, 20_000):
        monkeypatch.setattr(scan, "DEPTH_RANGE_ROWS", rows)
        cut = validate_day(layout, DAY.date, DAY.symbol, TH, resume=False).to_dict()
        assert _strip(cut) == _strip(whole) and cut["scan"] == whole["scan"], rows

    s = scan.scan_day(inputs_for(layout, DAY.date, DAY.symbol), day_start_ns(DAY.date), tol_ns=60 * NS)
    held = s.golden_depth.state("g") | s.lake_delta.state("d")
    assert sum(a.nbytes for a in held.values()) < 4_000 < 3 * 8 * len(u)
