"""The capture index kept per line by the writer: counts, symbols, capture and exchange time bounds."""

from __future__ import annotations

from rlx_pipeline.formats.capture_file import (
    EVENT_STREAM,
    CaptureIndex,
    CaptureWriter,
    event_data,
    iter_capture_lines,
    read_index,
)


def test_index_counts_streams_symbols_and_time_bounds():
    idx = CaptureIndex()
    lines = [
        (10, EVENT_STREAM, event_data("session_start", symbol="btcusdt")),
        (11, "btcusdt@trade", b'{"e":"trade","E":1723161600005,"s":"BTCUSDT","t":1,"T":1723161600004}'),
        (12, "btcusdt@bookTicker", b'{"u":5,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1"}'),  # no time
        (13, "ethusdt@depth@100ms", b'{"e":"depthUpdate","E":1723161600002,"s":"ETHUSDT","U":1,"u":2}'),
        (14, "btcusdt@trade", b'{"e":"trade","E":1723161600009,"s":"BTCUSDT","t":2}'),
        (15, "ethusdt@aggTrade", b'{"e":"aggTrade","E":null,"T":1723161600001}'),  # E without digits: T
        (16, "btcusdt@bookTicker", b"{" + b" " * 80 + b'"E":1}'),  # a key past the first 80 bytes is not read
    ]
    for line in lines:
        idx.add(*line)
    assert idx.to_json() == {
        "venue": None,  # not said (the writer sets it): read as spot
        "symbols": ["btcusdt", "ethusdt"],
        "streams": {
            "btcusdt@bookTicker": 2,
            "btcusdt@trade": 2,
            "ethusdt@aggTrade": 1,
            "ethusdt@depth@100ms": 1,
            "rlx@event": 1,
        },
        "lines": 7,
        "first_capture_ns": 10,
        "last_capture_ns": 16,
        "first_event_ms": 1723161600001,
        "last_event_ms": 1723161600009,
    }


def test_the_writer_builds_per_frame_the_index_add_builds_per_line(tmp_path):
    """CaptureWriter indexes a frame at a time (at flush); the file's index is what ``add`` gives line by line,
    whatever the lines: no time, a key past 80 bytes, ``E`` without digits, a time beyond int64, several frames."""
    lines = [
        (10, EVENT_STREAM, event_data("session_start", symbol="btcusdt")),
        (11, "btcusdt@trade", b'{"e":"trade","E":1723161600005,"s":"BTCUSDT","t":1,"T":1723161600004}'),
        (12, "btcusdt@bookTicker", b'{"u":5,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1"}'),
        (2_000_000_013, "ethusdt@depth@100ms", b'{"e":"depthUpdate","E":1723161600002,"U":1,"u":2}'),
        (2_000_000_014, "ethusdt@aggTrade", b'{"e":"aggTrade","E":null,"T":1723161600001}'),
        (2_000_000_015, "btcusdt@bookTicker", b"{" + b" " * 80 + b'"E":1}'),
        (4_000_000_016, "solusdt@trade", b'{"E":1723161600009}'),
        (4_000_000_017, "solusdt@trade", b'{"T":' + b"9" * 25 + b"}"),  # beyond int64
        (4_000_000_018, "solusdt@trade", b'{"E":17231616000,"T":1}'),
        (4_000_000_019, "solusdt@trade", b""),
    ]
    expected = CaptureIndex(venue="binance_spot")
    for line in lines:
        expected.add(*line)
    path = tmp_path / "c.jsonl.zst"
    with CaptureWriter(path, venue="binance_spot", fsync=False) as w:
        for line in lines:
            w.write(*line)  # a frame per second of capture_ns: three frames
    assert read_index(path) == expected.to_json()
    assert (
        expected.to_json()["last_event_ms"] == int("9" * 25)
        and expected.to_json()["first_event_ms"] == 17231616000
    )
    assert [ns for _, ns, _, _ in iter_capture_lines(path)] == [ns for ns, _, _ in lines if ns]
