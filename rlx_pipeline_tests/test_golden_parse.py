"""Golden samples: exact parsing, continuity (declared vs silent), malformed lines, the real captures."""

from __future__ import annotations

import gzip

import orjson
import pyarrow.parquet as pq

from rlx_pipeline import fixed_point
from rlx_pipeline.capture.importers import import_files
from rlx_pipeline.formats.capture_file import EVENT_STREAM, event_data, write_capture
from rlx_pipeline.golden import build_golden, capture_files_for

E = 1723161600000  # 2024-08-09T00:00:00Z in ms


def _depth(U, u, e, bids=(), asks=()):
    return orjson.dumps(
        {"e": "depthUpdate", "E": e, "s": "BTCUSDT", "U": U, "u": u, "b": list(bids), "a": list(asks)}
    )


def _snap(last, bids, asks):
    return orjson.dumps({"lastUpdateId": last, "bids": bids, "asks": asks})


def _out(tmp_path):
    return lambda table: tmp_path / "golden" / f"{table}.parquet"


def test_exact_rows_and_a_bridged_run(tmp_path):
    trade = b'{"e":"trade","E":%d,"s":"BTCUSDT","t":7,"p":"60000.01000000","q":"0.00100000","T":%d,"m":true,"M":true}'
    lines = [
        (1, "btcusdt@depth@100ms", _depth(5, 9, E + 1, [["60000.00", "1.5"]])),  # before the snapshot
        (2, "btcusdt@depthSnapshot", _snap(10, [["60000.00", "1.5"]], [["60000.01", "2"]])),
        (3, "btcusdt@depth@100ms", _depth(9, 12, E + 2, [["60000.00", "0"]], [["60000.02", "3"]])),
        (4, "btcusdt@trade", trade % (E + 3, E + 3)),
        (5, "btcusdt@depth@100ms", _depth(13, 13, E + 4)),
    ]
    path = write_capture(tmp_path / "c.jsonl.zst", lines)
    res = build_golden([path], "BTC-USDT", "2024-08-09", _out(tmp_path))
    assert res.rows == {"trades": 1, "agg_trades": 0, "depth": 4, "snapshots": 2, "book_ticker": 0}
    assert (res.depth_runs, res.unbridged_runs, res.unseeded_depth_messages, len(res.gaps)) == (1, 0, 1, 0)
    t = pq.read_table(tmp_path / "golden" / "trades.parquet").to_pylist()[0]
    assert t["price"] == fixed_point.parse("60000.01") and t["quantity"] == 100_000 and t["is_buyer_maker"]
    assert (t["source_file"], t["line_no"]) == (str(path), 4)
    depth = pq.read_table(tmp_path / "golden" / "depth.parquet").to_pylist()
    assert depth[-1]["side_is_bid"] is None and depth[-1]["final_update_id"] == 13  # empty message kept


def test_silent_and_declared_gaps_and_malformed_lines(tmp_path):
    lines = [
        (1, "btcusdt@depthSnapshot", _snap(10, [], [])),
        (2, "btcusdt@depth@100ms", _depth(11, 12, E + 1)),
        (3, "btcusdt@depth@100ms", _depth(15, 16, E + 2)),  # silent gap: 13..14 lost
        (4, EVENT_STREAM, event_data("reconnect", symbol="btcusdt")),
        (5, "btcusdt@depth@100ms", _depth(30, 31, E + 3)),  # after a declared reconnect
        (6, "btcusdt@trade", b'{"e":"trade","E":1'),  # malformed
    ]
    path = write_capture(tmp_path / "c.jsonl.zst", lines)
    res = build_golden([path], "BTC-USDT", "2024-08-09", _out(tmp_path))
    assert [(g.expected, g.got, g.declared) for g in res.gaps] == [(13, 15, False), (17, 30, True)]
    assert len(res.silent_gaps) == 1
    assert [(f, n) for f, n, _ in res.malformed] == [(str(path), 6)]


def test_real_captures_import_losslessly_with_zero_gaps(tmp_path, real_samples):
    sources = sorted((real_samples / "hftbacktest").glob("*.gz"))
    files = import_files(sources, tmp_path / "capture" / "imported")
    counts = {}
    for src in sources:
        with gzip.open(src, "rb") as f:
            for line in f:
                body = line.split(b" ", 1)[1]
                kind = (
                    orjson.loads(body)["stream"].split("@", 1)[1]
                    if body.startswith(b'{"stream"')
                    else "depthSnapshot"
                )
                counts[kind] = counts.get(kind, 0) + 1
    got: dict[str, int] = {}
    for date in ("2024-08-08", "2024-08-09"):
        picked = capture_files_for(tmp_path / "capture", "ETH-USDT", date)
        assert set(picked) <= set(files)
        res = build_golden(picked, "ETH-USDT", date, lambda t, d=date: tmp_path / d / f"{t}.parquet")
        assert res.silent_gaps == [] and res.unbridged_runs == 0 and not res.malformed
        assert res.trade_id_gaps == 0 and res.trade_id_duplicates == 0
        for k, v in res.messages.items():
            got[k] = got.get(k, 0) + v
    assert got == counts  # every message of the sources, each on exactly one day
    # 2024-08-09 has no snapshot of its own: it is seeded by the carried book of the 08-08 session
    assert res.carried_snapshots == 1


def test_a_stale_snapshot_replaced_by_a_bridging_one_is_not_a_failure(tmp_path):
    lines = [
        (1, "btcusdt@depthSnapshot", _snap(10, [], [])),
        (2, "btcusdt@depth@100ms", _depth(20, 21, E + 1)),  # does not bridge 10: the snapshot was stale
        (3, EVENT_STREAM, event_data("resync", symbol="btcusdt")),
        (4, "btcusdt@depthSnapshot", _snap(21, [], [])),
        (5, "btcusdt@depth@100ms", _depth(22, 23, E + 2)),
    ]
    res = build_golden(
        [write_capture(tmp_path / "a.jsonl.zst", lines)], "BTC-USDT", "2024-08-09", _out(tmp_path)
    )
    assert (res.unbridged_runs, res.superseded_snapshots, len(res.silent_gaps)) == (0, 1, 0)
    lines = lines[:2]  # nothing replaces it: a failure
    res = build_golden(
        [write_capture(tmp_path / "b.jsonl.zst", lines)], "BTC-USDT", "2024-08-09", _out(tmp_path)
    )
    assert res.unbridged_runs == 1


def test_a_diff_written_before_its_snapshot_bridges_it(tmp_path):
    """The diff arrived while the REST request was in flight: Binance's procedure buffers and replays it."""
    lines = [
        (1, "btcusdt@depth@100ms", _depth(8, 9, E + 1, [["60000.00", "1"]])),
        (2, "btcusdt@depth@100ms", _depth(10, 12, E + 2, [["60000.00", "2"]])),  # bridges 10 (U <= 11 <= u)
        (3, "btcusdt@depthSnapshot", _snap(10, [["60000.00", "1"]], [["60000.01", "2"]])),
        (4, "btcusdt@depth@100ms", _depth(13, 14, E + 3, [], [["60000.01", "5"]])),
    ]
    res = build_golden(
        [write_capture(tmp_path / "c.jsonl.zst", lines)], "BTC-USDT", "2024-08-09", _out(tmp_path)
    )
    assert (res.depth_runs, res.buffered_bridges, res.unbridged_runs, len(res.gaps)) == (1, 1, 0, 0)
    # A stale buffered diff that does not bridge is still a failure.
    lines[1] = (2, "btcusdt@depth@100ms", _depth(12, 13, E + 2))
    res = build_golden(
        [write_capture(tmp_path / "d.jsonl.zst", lines)], "BTC-USDT", "2024-08-09", _out(tmp_path)
    )
    assert res.unbridged_runs == 1


def test_usdm_diff_with_u_equal_to_last_update_id_bridges(tmp_path):
    """USD-M drops only u < lastUpdateId; the diff with u == lastUpdateId is the bridging one."""

    def fut(U, u, pu, e):
        return orjson.dumps(
            {"e": "depthUpdate", "E": e, "T": e, "s": "BTCUSDT", "U": U, "u": u, "pu": pu, "b": [], "a": []}
        )

    ns = E * 1_000_000  # capture times inside the day (the snapshot has no event time of its own)
    lines = [
        (ns, "btcusdt@depthSnapshot", _snap(10, [], [])),
        (ns + 1, "btcusdt@depth@0ms", fut(9, 10, 8, E + 1)),
        (ns + 2, "btcusdt@depth@0ms", fut(11, 15, 10, E + 2)),
    ]
    path = write_capture(tmp_path / "f.jsonl.zst", lines, venue="binance_usdm")
    res = build_golden([path], "BTC-USDT-PERP", "2024-08-09", _out(tmp_path))
    assert (res.depth_runs, res.unbridged_runs, len(res.gaps), res.malformed) == (1, 0, 0, [])


def test_real_cryptofeed_spot_and_usdm_captures_bridge_without_gaps(tmp_path, real_samples):
    """cryptofeed's spot and USD-M playback files: every symbol's snapshot bridges, no gap, no message lost."""
    sources = sorted((real_samples / "cryptofeed").glob("BINANCE*"))
    files = import_files(sources, tmp_path / "capture")
    seen = {}
    for f, symbols, date in (
        (files[0], ["NKN-USDT", "LRC-BTC", "BLZ-ETH"], "2021-10-12"),
        (files[1], ["SUSHI-USDT-PERP", "CTK-USDT-PERP", "AKRO-USDT-PERP", "KEEP-USDT-PERP"], "2021-07-22"),
    ):
        assert f.name.endswith(("BINANCE.jsonl.zst", "BINANCE_FUTURES.jsonl.zst"))
        for sym in symbols:
            res = build_golden([f], sym, date, lambda t, s=sym: tmp_path / s / f"{t}.parquet")
            assert (res.depth_runs, res.unbridged_runs, len(res.gaps), len(res.malformed)) == (1, 0, 0, 0), (
                sym
            )
            seen[sym] = res.messages["depth@100ms"]
    # depth messages per symbol as in the source files (USD-M AKRO/CTK/KEEP bridge on u == lastUpdateId)
    assert seen == {
        "NKN-USDT": 150, "LRC-BTC": 15, "BLZ-ETH": 10,
        "SUSHI-USDT-PERP": 255, "CTK-USDT-PERP": 185, "AKRO-USDT-PERP": 189, "KEEP-USDT-PERP": 135,
    }  # fmt: skip


def test_a_reconnect_of_another_connection_does_not_declare_this_symbols_gap(tmp_path):
    """A capture split over connections: a reconnect event names the symbols of its connection only."""

    def lines(symbols):
        return [
            (1, "btcusdt@depthSnapshot", _snap(10, [], [])),
            (2, "btcusdt@depth@100ms", _depth(11, 12, E + 1)),
            (3, EVENT_STREAM, event_data("reconnect", symbol=None, symbols=symbols)),
            (4, "btcusdt@depth@100ms", _depth(20, 21, E + 2)),  # a gap: 13..19 lost
        ]

    out = _out(tmp_path)
    other = build_golden(
        [write_capture(tmp_path / "a.jsonl.zst", lines(["ethusdt"]))], "BTC-USDT", "2024-08-09", out
    )
    own = build_golden(
        [write_capture(tmp_path / "b.jsonl.zst", lines(["btcusdt"]))], "BTC-USDT", "2024-08-09", out
    )
    assert [g.declared for g in other.gaps] == [False] and len(other.silent_gaps) == 1
    assert [g.declared for g in own.gaps] == [True] and own.silent_gaps == []


def test_a_handover_drops_its_copies_but_declares_no_break(tmp_path):
    """A hand-over (a ``reconnect`` naming the ``previous`` connection) is not a resync: the overlap's copies are
    dropped, a real break during it stays silent."""
    lines = [
        (1, "btcusdt@depthSnapshot", _snap(10, [], [])),
        (2, "btcusdt@depth@100ms", _depth(11, 12, E + 1)),
        (3, EVENT_STREAM, event_data("reconnect", symbol=None, symbols=["btcusdt"], previous=1)),
        (4, "btcusdt@depth@100ms", _depth(15, 16, E + 2)),  # a gap right after it: 13..14 lost
        (5, "btcusdt@depth@100ms", _depth(11, 12, E + 1)),  # the new connection's copy
        (6, "btcusdt@depth@100ms", _depth(17, 18, E + 3)),
        (7, EVENT_STREAM, event_data("handover_end", symbol=None, symbols=["btcusdt"], connection=1)),
    ]
    res = build_golden(
        [write_capture(tmp_path / "c.jsonl.zst", lines)], "BTC-USDT", "2024-08-09", _out(tmp_path)
    )
    assert [(g.expected, g.got, g.declared) for g in res.gaps] == [(13, 15, False)]
    assert res.overlap_duplicates == 1 and res.rows["depth"] == 3


def test_a_failed_parquet_write_fails_the_build_and_publishes_no_table(tmp_path, monkeypatch):
    """The tables are written by a writer thread: its failure reaches the build, and no table is published
    (the previous good output, if any, stays)."""
    import pytest

    from rlx_pipeline.golden import parse
    from rlx_pipeline.storage import ParquetBatchWriter

    monkeypatch.setattr(parse, "FLUSH_ROWS", 2)
    lines = [(i, "btcusdt@depth@100ms", _depth(i, i, E + i, [["1", "1"]])) for i in range(1, 20)]
    path = write_capture(tmp_path / "c.jsonl.zst", lines)
    (tmp_path / "golden").mkdir()
    (tmp_path / "golden" / "depth.parquet").write_bytes(b"previous good output")
    real_write = ParquetBatchWriter.write

    def failing(self, batch):
        if self.rows >= 4:
            raise OSError("disk full")
        real_write(self, batch)

    monkeypatch.setattr(ParquetBatchWriter, "write", failing)
    with pytest.raises(OSError, match="disk full"):
        build_golden([path], "BTC-USDT", "2024-08-09", _out(tmp_path))
    assert sorted(p.name for p in (tmp_path / "golden").iterdir()) == ["depth.parquet"]
    assert (tmp_path / "golden" / "depth.parquet").read_bytes() == b"previous good output"
