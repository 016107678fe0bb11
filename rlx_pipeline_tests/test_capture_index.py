"""The capture index kept per line by the writer: counts, symbols, capture and exchange time bounds."""

from __future__ import annotations

from rlx_pipeline.formats.capture_file import EVENT_STREAM, CaptureIndex, event_data


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
