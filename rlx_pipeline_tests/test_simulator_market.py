"""The simulator: deterministic, its renderings agree with its truth, its frames look like Binance's."""

from __future__ import annotations

import gzip
import math

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from rlx_pipeline import fixed_point
from rlx_pipeline.formats.capture_file import iter_capture_lines, read_index
from rlx_pipeline.layout import lake_key
from rlx_pipeline.simulator import SimConfig, simulate


@pytest.fixture(scope="module")
def truth():
    return simulate(SimConfig(duration_s=60, seed=11))


def test_deterministic_for_a_seed(truth):
    again = simulate(SimConfig(duration_s=60, seed=11))
    assert list(again.binance_frames()) == list(truth.binance_frames())
    other = simulate(SimConfig(duration_s=60, seed=12))
    assert list(other.binance_frames())[:50] != list(truth.binance_frames())[:50]


def _apply(book, levels):
    for p, q in levels:
        p, q = fixed_point.parse(p), fixed_point.parse(q)
        if q:
            book[p] = q
        else:
            book.pop(p, None)


def test_binance_rendering_replays_to_the_truth_at_every_update_id(truth):
    snap = orjson.loads(truth.initial_snapshot())
    bids, asks = {}, {}
    _apply(bids, snap["bids"])
    _apply(asks, snap["asks"])
    prev_u = snap["lastUpdateId"]
    checked = 0
    for _, stream, data in truth.binance_frames():
        if not stream.endswith("@depth@100ms"):
            continue
        msg = orjson.loads(data)
        assert msg["U"] == prev_u + 1  # no gaps in a perfect rendering
        prev_u = msg["u"]
        _apply(bids, msg["b"])
        _apply(asks, msg["a"])
        tb, ta = truth.book_at(msg["u"])
        assert bids == tb and asks == ta
        assert max(bids) < min(asks)
        checked += 1
    assert checked == len(truth.market.depth) > 500


def test_book_ticker_equals_the_truth_top_where_ids_match(truth):
    tops = {u: (max(b), min(a)) for u, _, b, a in truth.iter_books()}
    tick = truth.market.tick
    matched = 0
    for _, stream, data in truth.binance_frames():
        if stream.endswith("@bookTicker"):
            msg = orjson.loads(data)
            if msg["u"] in tops:
                bid, ask = tops[msg["u"]]
                assert (fixed_point.parse(msg["b"]), fixed_point.parse(msg["a"])) == (bid * tick, ask * tick)
                matched += 1
    assert matched > 10


def test_lake_book_rows_equal_the_truth_at_their_sequence_numbers(truth, tmp_path):
    paths = truth.write_lake(tmp_path)
    assert paths["book"] == tmp_path / lake_key("book", "BINANCE", "BTC-USDT", "2024-08-09")
    book = pq.read_table(paths["book"]).to_pylist()
    assert book[0]["sequence_number"] == truth.market.initial_update_id
    deltas = pq.read_table(paths["book_delta_v2"])
    assert book[0]["sequence_number"] < deltas["sequence_number"][0].as_py()
    for row in book:
        bids, asks = truth.book_at(row["sequence_number"])
        for i, (p, q) in enumerate(sorted(bids.items(), reverse=True)[:20]):
            assert fixed_point.from_float(
                np.array([row[f"bid_{i}_price"], row[f"bid_{i}_size"]])
            ).tolist() == [p, q]
        for i, (p, q) in enumerate(sorted(asks.items())[:20]):
            assert fixed_point.from_float(
                np.array([row[f"ask_{i}_price"], row[f"ask_{i}_size"]])
            ).tolist() == [p, q]
    trades = pq.read_table(paths["trades"])
    ids = trades["id"].to_numpy()
    assert (np.diff(ids) == 1).all()
    assert set(trades["side"].to_pylist()) == {"buy", "sell"}


def test_perfect_capture_holds_every_frame_verbatim(truth, tmp_path):
    path = truth.write_capture(tmp_path / "cap.jsonl.zst")
    lines = list(iter_capture_lines(path))
    frames = list(truth.binance_frames())
    got = [
        (s, d) for _, _, s, d in lines if s.endswith(("@trade", "@aggTrade", "@depth@100ms", "@bookTicker"))
    ]
    assert got == [(s, d) for _, s, d in frames]
    assert lines[1][2] == "btcusdt@depthSnapshot" and lines[1][3] == truth.initial_snapshot()
    index = read_index(path)
    assert index["lines"] == len(lines) and index["symbols"] == ["btcusdt"]


def _keys_and_types(obj):
    return {k: type(v).__name__ for k, v in obj.items()}


def test_frames_have_the_real_field_sets_and_types(truth, real_samples):
    real = {}
    with gzip.open(real_samples / "hftbacktest" / "binance_spot_ethusdt_20240809.gz", "rt") as f:
        for line in f:
            frame = orjson.loads(line.split(" ", 1)[1])
            if "stream" in frame:
                kind = frame["stream"].split("@", 1)[1]
                real.setdefault(kind, _keys_and_types(frame["data"]))
    sim = {}
    for _, stream, data in truth.binance_frames():
        sim.setdefault(stream.split("@", 1)[1], _keys_and_types(orjson.loads(data)))
    for kind in ("trade", "depth@100ms", "bookTicker"):
        assert sim[kind] == real[kind], kind


def test_statistics_are_market_like():
    t = simulate(SimConfig(duration_s=600, seed=3))
    levels = np.array([len(d.bids) + len(d.asks) for d in t.market.depth])
    assert 10 <= np.median(levels) <= 24 and levels.mean() > np.median(levels) * 1.2  # long tail
    ts = np.array([x.trade_ns for x in t.market.trades], dtype=np.int64)
    gaps = np.diff(np.unique(ts)) / 1e9
    cv = gaps.std() / gaps.mean()
    assert cv > 1.2  # clustered: a Poisson process has CV 1 (+-0.01 at this size)
    sizes = np.array([x.qty for x in t.market.trades], dtype=np.float64) * t.market.lot / 1e8
    xmin = 0.07
    tail = sizes[sizes >= xmin]
    alpha = 1 + len(tail) / np.log(tail / xmin).sum()  # continuous MLE at the known xmin
    assert not math.isnan(alpha) and abs(alpha - 2.4) < 0.3


def test_simulate_cli_writes_lake_and_capture(tmp_path):
    from click.testing import CliRunner

    from rlx_pipeline.cli import main

    out = CliRunner().invoke(
        main,
        [
            "simulate",
            "--minutes",
            "0.2",
            "--lake",
            str(tmp_path / "lake"),
            "--capture",
            str(tmp_path / "cap"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert (tmp_path / "lake" / lake_key("trades", "BINANCE", "BTC-USDT", "2024-08-09")).is_file()
    assert read_index(tmp_path / "cap" / "sim-BTC-USDT-2024-08-09.jsonl.zst")["symbols"] == ["btcusdt"]


def test_windows_join_into_the_same_run_and_the_streamed_lake_equals_the_whole(tmp_path):
    """A long run is generated window by window (bounded memory) with exactly the events of the whole run."""
    import polars as pl

    from rlx_pipeline.golden import build_golden
    from rlx_pipeline.simulator import iter_market, write_stream
    from rlx_pipeline.simulator.render import capture_lines, iter_books, lake_tables

    c = SimConfig(duration_s=95, seed=11, book_snapshot_every_s=7)
    whole = simulate(c).market
    windows = list(iter_market(c, chunk_s=30))
    assert [w.config.duration_s for w in windows] == [30, 30, 30, 5]
    assert [w.config.start_ns - c.start_ns for w in windows] == [0, 30 * 10**9, 60 * 10**9, 90 * 10**9]
    for attr in ("depth", "trades", "tickers"):
        assert [x for w in windows for x in getattr(w, attr)] == getattr(whole, attr)
    *_, (u, _, bids, asks) = iter_books(windows[0])
    assert (windows[1].initial_update_id, windows[1].initial_bids, windows[1].initial_asks) == (u, bids, asks)

    paths = write_stream(c, lake_root=tmp_path, capture_path=tmp_path / "cap.jsonl.zst", chunk_s=30)
    capture = paths.pop("capture")
    ref = lake_tables(whole)
    for table, path in paths.items():
        got = pl.read_parquet(path)
        want = pl.from_arrow(ref[table])
        assert got.height == want.height and got.height > 0
        # identical rows, book snapshots included (same schedule across windows); only the lags are redrawn
        assert got.drop("receipt_timestamp").equals(want.drop("receipt_timestamp")), table
        lag = got["receipt_timestamp"] - got["timestamp"]
        assert lag.min() > 0 and lag.median() < 50 * 10**6, table
    # the streamed capture: every line of the whole run's capture, capture times monotonic, one session
    lines = list(iter_capture_lines(capture))
    assert sorted((s, d) for _, _, s, d in lines) == sorted((s, d) for _, s, d in capture_lines(whole))
    assert all(a[1] <= b[1] for a, b in zip(lines, lines[1:], strict=False))
    res = build_golden([capture], c.symbol, c.start[:10], lambda t: tmp_path / "golden" / f"{t}.parquet")
    assert (res.depth_runs, res.unbridged_runs, len(res.gaps)) == (1, 0, 0)
    assert res.messages["depth@100ms"] == len(whole.depth)
