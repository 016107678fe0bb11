"""Golden parsing in columnar batches writes exactly what the per-line parser writes (tables byte for byte, the
same summary), on a capture with every message kind, resyncs, gaps and malformed lines, and on the real samples."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import zstandard

from rlx_pipeline import venues
from rlx_pipeline.capture.importers import import_files
from rlx_pipeline.formats.capture_file import EVENT_STREAM, encode_line, event_data
from rlx_pipeline.golden import TABLES, build_golden, columnar

E = 1723161600000  # 2024-08-09T00:00:00Z in ms
NS = 1_000_000


def _depth(U, u, e, bids=(), asks=(), **extra):
    return orjson.dumps(
        {
            "e": "depthUpdate",
            "E": e,
            "s": "BTCUSDT",
            "U": U,
            "u": u,
            "b": list(bids),
            "a": list(asks),
            **extra,
        }
    )


def _trade(t, e, p="60000.01000000", q="0.00100000", m=True):
    return orjson.dumps({"e": "trade", "E": e, "s": "BTCUSDT", "t": t, "p": p, "q": q, "T": e, "m": m})


def _agg(a, e):
    return orjson.dumps(
        {
            "e": "aggTrade",
            "E": e,
            "s": "BTCUSDT",
            "a": a,
            "p": "60000.5",
            "q": "2",
            "f": 7,
            "l": 9,
            "T": e,
            "m": False,
        }
    )


def _ticker(u, **times):
    return orjson.dumps(
        {"u": u, "s": "BTCUSDT", "b": "59999.99", "B": "1.5", "a": "60000.01", "A": "0.3", **times}
    )


def _snap(last, bids, asks):
    return orjson.dumps({"lastUpdateId": last, "bids": bids, "asks": asks})


def _write(path: Path, frames: list[list[bytes] | bytes]) -> Path:
    """A capture file written frame by frame from raw lines (so lines no writer would produce can be tested);
    a ``bytes`` item is written as is (corrupt data between frames)."""
    cctx = zstandard.ZstdCompressor()
    path.write_bytes(b"".join(f if isinstance(f, bytes) else cctx.compress(b"".join(f)) for f in frames))
    return path


def _line(ms: int, stream: str, data: bytes) -> bytes:
    return encode_line(ms * NS, stream, data)


def _previous_day(path: Path) -> Path:
    """The end of 2024-08-08: a session seeded there, continuing into 2024-08-09 (a carried snapshot)."""
    d0 = E - 5_000
    return _write(
        path,
        [
            [
                _line(d0, EVENT_STREAM, event_data("session_start", symbol="btcusdt")),
                _line(
                    d0,
                    "btcusdt@depthSnapshot",
                    _snap(100, [["59990.00", "1"], ["59991.00", "2"]], [["60010", "3"]]),
                ),
                _line(
                    d0 + 1,
                    "btcusdt@depth@100ms",
                    _depth(101, 102, d0 + 1, [["59990.00", "0"]], [["60011.5", "4"]]),
                ),
                _line(d0 + 2, "btcusdt@trade", _trade(50, d0 + 2)),
                _line(d0 + 3, "btcusdt@bookTicker", _ticker(102)),
            ],
            [
                _line(d0 + 4, "btcusdt@trade", _trade(51, d0 + 4)),
                _line(d0 + 5, "btcusdt@depth@100ms", _depth(103, 104, d0 + 5, [["59992.10", "0.5"]])),
            ],
        ],
    )


def _the_day(path: Path) -> Path:
    lines = [
        _line(
            E + 1, "btcusdt@bookTicker", _ticker(104)
        ),  # no E: takes the previous message's time (day before)
        _line(E + 2, "btcusdt@trade", _trade(52, E + 2)),
        _line(
            E + 3, "btcusdt@depth@100ms", _depth(105, 106, E + 3, [["59993", "1"]], [["60012.12345678", "2"]])
        ),
        _line(E + 4, "ethusdt@trade", _trade(9, E + 4)),  # another symbol
        _line(E + 5, "btcusdt@aggTrade", _agg(1, E + 5)),
        _line(E + 6, "btcusdt@depth@100ms", _depth(107, 107, E + 6)),  # no levels: one row of nulls
        _line(E + 7, "btcusdt@trade", _trade(54, E + 7)),  # trade id gap
        _line(E + 8, "btcusdt@trade", _trade(54, E + 8)),  # duplicate
        _line(E + 9, "btcusdt@depth@100ms", _depth(110, 111, E + 9, [["59994", "1"]])),  # silent gap
        _line(E + 10, EVENT_STREAM, event_data("reconnect", symbols=["btcusdt", "ethusdt"])),
        _line(E + 11, EVENT_STREAM, event_data("reconnect", symbol="ethusdt")),
        _line(E + 12, "btcusdt@depth@100ms", _depth(120, 121, E + 12, [["59995", "1"]])),  # declared
        _line(E + 13, "btcusdt@depthSnapshot", _snap(130, [["59996", "1"]], [["60013", "1"]])),
        _line(E + 14, "btcusdt@depth@100ms", _depth(125, 129, E + 14)),  # older than the snapshot
        _line(E + 15, "btcusdt@depth@100ms", _depth(130, 133, E + 15, [["59997", "2"]], [["60014", "0"]])),
        _line(E + 16, "btcusdt@bookTicker", _ticker(134, E=E + 16, T=E + 16)),  # USD-M style, with E and T
        _line(E + 17, "btcusdt@kline_1m", b'{"e":"kline","E":%d,"s":"BTCUSDT"}' % (E + 17)),  # another kind
        _line(E + 18, "btcusdt@trade", b'{"e":"trade","E":1'),  # bad JSON
        _line(E + 19, "btcusdt@trade", _trade(55, E + 19, p="1.123456789")),  # more than 8 decimals
        _line(E + 20, "btcusdt@trade", _trade(56, E + 20, p="-5")),  # a sign: the per-line parser reads it
        _line(E + 21, "btcusdt@trade", _trade(57, E + 21, q=" 2")),  # spaces too
        _line(E + 22, "btcusdt@trade", _trade(58, E + 22, p="1.10000000000")),  # zeros past 8 decimals
        _line(E + 23, "btcusdt@depth@100ms", _depth(134, 135, E + 23, [["59998", "1", "x"]])),  # bad level
        _line(E + 24, "btcusdt@depth@100ms", _depth(136, 136, E + 24, pu=135)),  # pu: not spot's
        _line(E + 25, "btcusdt@aggTrade", b'{"E":%d,"a":"2"}' % (E + 25)),  # missing fields
        _line(E + 26, "btcusdt@trade", b'{"e":"trade","E":null,"T":%d,"t":59}' % (E + 26)),
        _line(E + 27, EVENT_STREAM, b"{not json"),
        b"\n",  # an empty line
        b'{"capture_ns":+1723161600028000000,"stream":"btcusdt@trade","data":' + _trade(60, E + 28) + b"}\n",
        b'{"capture_ns":' + str((E + 29) * NS).encode() + b',"stream":"btcusdt@trade","data":{"p":"\xff"}}\n',
        _line(E + 30, "btcusdt@trade", _trade(61, E + 30)),
        _line(E + 86_400_000, "btcusdt@trade", _trade(62, E + 86_400_000)),  # the next day
        _line(E + 86_400_001, "btcusdt@depth@100ms", _depth(137, 138, E + 86_400_001, [["1", "1"]])),
        _line(E + 31, "btcusdt@trade", _trade(63, E + 31)),  # back in the day
        b"garbage that is not a capture line\n",  # recorded; reading goes on
        _line(E + 32, "btcusdt@trade", _trade(64, E + 32)),
        # a hand-over: both connections write for a while, the copies are dropped (and counted)
        _line(E + 33, EVENT_STREAM, event_data("reconnect", symbols=["btcusdt"], previous=1)),
        _line(E + 34, "btcusdt@depth@100ms", _depth(139, 140, E + 34, [["59999", "1"]])),
        _line(E + 35, "btcusdt@depth@100ms", _depth(137, 138, E + 35, [["1", "1"]])),  # a copy
        _line(E + 36, "btcusdt@trade", _trade(65, E + 36)),
        _line(E + 37, "btcusdt@trade", _trade(64, E + 37)),  # a copy
        _line(E + 38, "btcusdt@aggTrade", _agg(3, E + 38)),
        _line(E + 39, "btcusdt@aggTrade", _agg(3, E + 39)),  # a copy
        _line(E + 40, "btcusdt@bookTicker", _ticker(140)),
        _line(E + 41, "btcusdt@bookTicker", _ticker(134)),  # a copy
        _line(E + 42, "btcusdt@trade", _trade(65, E + 42)),  # a copy
        _line(E + 43, EVENT_STREAM, event_data("handover_end", symbols=["btcusdt"], connection=1)),
        _line(E + 44, "btcusdt@depth@100ms", _depth(139, 140, E + 44, [["59999", "1"]])),  # late copy
        _line(E + 45, "btcusdt@depth@100ms", _depth(141, 142, E + 45)),
        _line(E + 46, "btcusdt@trade", _trade(66, E + 46)),
        _line(E + 47, "btcusdt@trade", _trade(66, E + 47)),  # past the overlap: a duplicate again
    ]
    frames: list[list[bytes] | bytes] = [lines[i : i + 4] for i in range(0, len(lines), 4)]
    frames.insert(5, b"\x28\xb5\x2f\xfd corrupt frame")  # unreadable bytes: recorded where they are met
    return _write(path, frames)


def _build(files, out: Path, symbol="BTC-USDT", date="2024-08-09", **kw):
    res = build_golden(files, symbol, date, lambda t: out / f"{t}.parquet", **kw)
    return res, {t: (out / f"{t}.parquet").read_bytes() for t in TABLES}


@pytest.mark.parametrize("batch_lines", [1, 3, 5, 100_000])
def test_columnar_batches_write_what_the_per_line_parser_writes(tmp_path, monkeypatch, batch_lines):
    files = [_previous_day(tmp_path / "a.jsonl.zst"), _the_day(tmp_path / "b.jsonl.zst")]
    ref, ref_tables = _build(files, tmp_path / "ref", columnar=False)
    monkeypatch.setattr(columnar, "BATCH_LINES", batch_lines)
    res, tables = _build(files, tmp_path / "new")
    assert tables == ref_tables
    assert json.dumps(res.summary()) == json.dumps(ref.summary())
    # The capture exercises what it says: carried book, gaps, declared resync, every kind, malformed lines,
    # a hand-over overlap.
    assert ref.carried_snapshots == 1 and ref.rows["snapshots"] == 4 + 2
    assert [(g.expected, g.got, g.declared) for g in ref.gaps] == [(108, 110, False), (112, 120, True)]
    # (a malformed line leaves no trace: trade 59 of line 26 is not in the id sequence, 58 -> 60 is a gap)
    assert (ref.trade_id_gaps, ref.trade_id_duplicates, ref.overlap_duplicates) == (2, 2, 6)
    assert ref.rows == {"trades": 13, "snapshots": 6, "depth": 10, "agg_trades": 2, "book_ticker": 2}
    assert [n for _, n, _ in ref.malformed] == [18, 19, -1, 23, 24, 25, 26, 27, 30, -1]
    assert ref.unreadable_bytes == 18 and "corrupt zstd data" in ref.malformed[2][2]
    assert "line 35: not a capture line" in ref.malformed[-1][2]
    assert ref.messages["kline_1m"] == 1 and ref.unbridged_runs == 0


def test_columnar_matches_on_the_real_samples(tmp_path, real_samples):
    """The real hftbacktest (spot ETHUSDT, two days) and cryptofeed (spot and USD-M) captures."""
    hft = import_files(sorted((real_samples / "hftbacktest").glob("*.gz")), tmp_path / "hft")
    cf = import_files(sorted((real_samples / "cryptofeed").glob("BINANCE*")), tmp_path / "cf")
    cases = [
        (hft, "ETH-USDT", "2024-08-08"),
        (hft, "ETH-USDT", "2024-08-09"),
        (cf[:1], "NKN-USDT", "2021-10-12"),
        (cf[1:], "AKRO-USDT-PERP", "2021-07-22"),
    ]
    for i, (files, symbol, date) in enumerate(cases):
        ref, ref_tables = _build(files, tmp_path / f"ref{i}", symbol, date, columnar=False)
        res, tables = _build(files, tmp_path / f"new{i}", symbol, date)
        assert tables == ref_tables, (symbol, date)
        assert json.dumps(res.summary()) == json.dumps(ref.summary()), (symbol, date)
        assert sum(ref.rows.values()) > 0 and not ref.malformed, (symbol, date)


def _odd_lines() -> list[tuple[bytes, bool]]:
    """Lines JSON allows but Binance does not send, each with whether the batch scanner reads it (True) or hands
    it to the per-line parser (False): either way the tables must be the per-line parser's."""
    t = b'"e":"trade","E":%d,"s":"BTCUSDT","t":%d,"p":"60000.01","q":"0.5","T":%d,"m":true' % (E, 70, E)
    trade = "btcusdt@trade"
    depth = "btcusdt@depth@100ms"
    return [
        (_line(E, trade, _trade(70, E)), True),
        (
            _line(
                E,
                trade,
                b'{ "e" : "trade" ,\t"E" : %d , "s":"BTCUSDT", "t" : 71 , "p" : "60000.01" , "q":"1" ,'
                b' "T" : %d , "m" : false }' % (E, E),
            ),
            True,
        ),  # whitespace
        (
            _line(E, trade, b"{" + t.replace(b'"t":70', b'"t":72,"t":73') + b"}"),
            False,
        ),  # duplicate key: last wins
        (
            _line(E, trade, b"{" + t.replace(b'"t":70', b'"t":74.0') + b"}"),
            False,
        ),  # a float id: int() reads it
        (
            _line(E, trade, b"{" + t.replace(b'"t":70', b'"t":"75"') + b"}"),
            False,
        ),  # a string id: int() reads it
        (
            _line(E, trade, b"{" + t.replace(b'"t":70', b'"t":76').replace(b'"m":true', b'"m":1') + b"}"),
            False,
        ),
        (
            _line(
                E, trade, b"{" + t.replace(b'"t":70', b'"t":77').replace(b"BTCUSDT", b"BTC\\u0055SDT") + b"}"
            ),
            False,
        ),
        (
            _line(E, trade, b"{" + t.replace(b'"t":70', b'"t":78') + b',"x":{"y":[1,2]}}'),
            False,
        ),  # nested value
        (_line(E, trade, b"{" + t.replace(b'"t":70', b'"t":79') + b',"x":-1.5e+5,"y":null,"pu":0}'), True),
        (
            _line(E, trade, b"{" + t.replace(b'"t":70', b'"t":80') + b"} x"),
            False,
        ),  # trailing bytes: malformed
        (
            _line(
                E,
                trade,
                b"{" + t.replace(b'"t":70', b'"t":81').replace(b"BTCUSDT", "BTCÜSDT".encode()) + b"}",
            ),
            False,
        ),
        (
            _line(
                E,
                trade,
                b"{" + t.replace(b'"t":70', b'"t":82').replace(b'"60000.01"', b'"60000.010000000000"') + b"}",
            ),
            True,
        ),
        (
            _line(E, trade, b"{" + t.replace(b'"t":70', b'"t":83').replace(b'"60000.01"', b'"6e4"') + b"}"),
            False,
        ),
        (b'{"capture_ns":00%d,"stream":"btcusdt@trade","data":%s}\n' % (E * NS, _trade(84, E)), False),
        (_line(E, depth, _depth(200, 201, E, [["1", "2"]])), True),
        (
            _line(
                E, depth, b'{"e":"depthUpdate","E":%d,"U":202,"u":202,"a":[["3","4"]],"b":[["1","2"]]}' % E
            ),
            False,
        ),
        (_line(E, depth, b'{"E":%d,"U":203,"u":203,"pu":null,"b":[],"a":[]}' % E), False),
        (_line(E, depth, b'{"E":%d,"U":204,"u":204,"b":[ [ "1.5" , "2" ] ],"a":[]}' % E), True),
        (_line(E, "btcusdt@bookTicker", _ticker(300, T=E + 1)), True),  # T only: the event time
        (_line(E, "btcusdt@bookTicker", _ticker(301, E=None)), False),  # an explicit null E: not T
        (_line(E, "btcusdt@aggTrade", _agg(-3, E)), True),  # a negative id is an integer
        (_line(E, trade, _trade(85, E)).replace(b"\n", b"\r\n"), True),  # CRLF
        (_line(E, trade, _trade(86, E)).replace(b"\n", b"\r"), True),  # CR alone ends a line too
        (_line(E, trade, _trade(87, E)).replace(b"btcusdt@trade", b"btcusdt@tr\xffde"), False),  # not UTF-8
    ]


def test_odd_json_is_read_as_the_per_line_parser_reads_it(tmp_path, monkeypatch):
    """Duplicate keys, floats or strings in integer fields, escapes, nested values, non-ASCII text, whitespace,
    asks before bids, explicit nulls, CR line ends: the batch scanner reads only what it reads exactly as the
    per-line parser, hands the rest over, and the tables are the per-line parser's."""
    import numpy as np

    from rlx_pipeline.golden import line_scan

    odd = _odd_lines()
    frame = b"".join(line for line, _ in odd)
    path = _write(tmp_path / "odd.jsonl.zst", [[frame]])
    arr = np.frombuffer(frame, np.uint8)
    sym = np.frombuffer(b"btcusdt", np.uint8)
    scan = line_scan.scan(
        arr,
        np.array([len(frame)]),
        line_scan.terminators(frame, arr),
        sym,
        *line_scan.field_masks(venues.SPOT.frames),
    )
    assert scan[0] == len(odd)
    assert [s == line_scan.HOT for s in scan[3][: scan[0]]] == [hot for _, hot in odd]
    ref, ref_tables = _build([path], tmp_path / "ref", columnar=False)
    res, tables = _build([path], tmp_path / "new")
    assert tables == ref_tables
    assert json.dumps(res.summary()) == json.dumps(ref.summary())
    assert ref.rows["trades"] == 14 and [n for _, n, _ in ref.malformed] == [10, 13, 17, -1]


def test_a_duplicate_key_reads_as_the_per_line_parser_reads_it(tmp_path):
    """Among ordinary trades, one with its id twice: orjson keeps the last, and so do the tables (the Polars
    decoder this replaced kept the first)."""
    dup = _trade(2, E).replace(b'"t":2', b'"t":2,"t":3')
    path = _write(
        tmp_path / "dup.jsonl.zst",
        [[_line(E, "btcusdt@trade", d) for d in (_trade(1, E), dup, _trade(4, E))]],
    )
    ref, ref_tables = _build([path], tmp_path / "ref", columnar=False)
    res, tables = _build([path], tmp_path / "new")
    assert tables == ref_tables
    assert json.dumps(res.summary()) == json.dumps(ref.summary())
    assert (ref.trade_id_gaps, ref.rows["trades"]) == (1, 3)  # ids 1, 3, 4: the last of the two read


def test_a_read_error_or_a_parse_error_ends_the_build_with_it(tmp_path, monkeypatch):
    """The reader thread's failure (here an I/O error after the first frame) reaches the build, as does a failure
    of the parsing thread while the reader is ahead of it; nothing is published and nothing hangs."""
    import threading

    import pytest

    path = _the_day(tmp_path / "b.jsonl.zst")
    monkeypatch.setattr(columnar, "BATCH_LINES", 1)
    real_frames = columnar.iter_frames

    def failing_frames(p, on_loss=None):
        frames = real_frames(p, on_loss=on_loss)
        yield next(frames)
        raise OSError("read failed")

    monkeypatch.setattr(columnar, "iter_frames", failing_frames)
    with pytest.raises(OSError, match="read failed"):
        _build([path], tmp_path / "a")
    monkeypatch.setattr(columnar, "iter_frames", real_frames)

    def failing_batch(*args):
        raise RuntimeError("parse failed")

    monkeypatch.setattr(columnar, "_batch", failing_batch)
    (tmp_path / "b").mkdir()
    with pytest.raises(RuntimeError, match="parse failed"):
        build_golden([path], "BTC-USDT", "2024-08-09", lambda t: tmp_path / "b" / f"{t}.parquet")
    assert not list((tmp_path / "b").iterdir())
    assert not [t for t in threading.enumerate() if t.name in ("golden-read", "golden-parquet")]
