"""Golden over a live capture with connection hand-overs: the overlap's duplicates (both connections write the same
messages for a while) are dropped and counted, never read as gaps or duplicate trades; spot and USD-M."""

from __future__ import annotations

import orjson
import pyarrow.parquet as pq
import pytest
import zstandard

from rlx_pipeline import venues
from rlx_pipeline.capture.service import CaptureConfig, run_capture
from rlx_pipeline.exchange import ExchangeThread
from rlx_pipeline.formats.capture_file import encode_line, iter_capture_lines
from rlx_pipeline.golden import TABLES, build_golden
from rlx_pipeline.golden.lake_render import render_lake_from_capture
from rlx_pipeline.orchestration.assets.golden import golden_integrity
from rlx_pipeline.simulator import SimConfig, simulate

pytestmark = pytest.mark.timeout(120)
DATE = "2024-08-09"
SPEED = 10.0


def _capture(truth, venue, out, max_connection_s: float | None):
    with ExchangeThread([truth], speed=SPEED) as srv:
        config = CaptureConfig(
            symbols=["btcusdt"],
            out_dir=out,
            venue=venue,
            ws_url=srv.ws_url,
            rest_url=srv.rest_url,
            duration_s=truth.config.duration_s / SPEED + 2,
            max_connection_s=max_connection_s,
        )
        return run_capture(config, handle_signals=False)


def _golden(path, symbol, out, columnar):
    res = build_golden([path], symbol, DATE, lambda t: out / f"{t}.parquet", columnar=columnar)
    return res, {t: pq.read_table(out / f"{t}.parquet") for t in TABLES}


def _sent(truth, kind: str, key: str) -> list[int]:
    return [orjson.loads(d)[key] for _, s, d in truth.binance_frames() if s.split("@", 1)[1] == kind]


@pytest.mark.parametrize(
    ("symbol", "venue", "id_kinds"),
    [
        ("BTC-USDT", venues.SPOT, {"trades": "trade_id", "agg_trades": "agg_trade_id"}),
        ("BTC-USDT-PERP", venues.USDM, {"agg_trades": "agg_trade_id"}),
    ],
)
def test_handover_overlap_duplicates_are_dropped_not_gaps(tmp_path, symbol, venue, id_kinds):
    truth = simulate(SimConfig(symbol=symbol, duration_s=20, seed=5))
    stats = _capture(truth, venue, tmp_path / "capture", max_connection_s=0.6)
    [path] = stats.files
    events = [orjson.loads(d) for _, _, s, d in iter_capture_lines(path) if s == "rlx@event"]
    assert sum(e["type"] == "reconnect" and e["reason"] == "session_limit" for e in events) >= 2
    assert sum(e["type"] == "handover_end" for e in events) >= 2 and stats.gaps == 0

    res, tables = _golden(path, symbol, tmp_path / "golden", columnar=False)
    s = res.summary()
    assert s["silent_gaps"] == 0 and s["gaps"] == [] and s["trade_id_duplicates"] == 0
    assert s["trade_id_gaps"] == 0 and s["malformed_lines"] == 0 and s["unbridged_runs"] == 0
    assert s["overlap_duplicates"] > 0  # the overlaps did deliver some messages twice
    integrity = golden_integrity(s)
    assert integrity.passed and integrity.metadata["overlap_duplicates"].value == s["overlap_duplicates"]

    # every message the exchange sent, once, in order: what a capture without hand-over holds
    depth = tables["depth"]
    per_level = depth["final_update_id"].to_pylist()
    u = [x for i, x in enumerate(per_level) if i == 0 or x != per_level[i - 1]]  # one per message
    sent_u = _sent(truth, "depth@100ms", "u")
    assert u == sent_u[sent_u.index(u[0]) :][: len(u)] and u[-1] == sent_u[-1]
    for table, column in id_kinds.items():
        ids = tables[table][column].to_pylist()
        assert ids == sorted(set(ids)) and ids == list(range(ids[0], ids[0] + len(ids)))
    ticker_u = tables["book_ticker"]["update_id"].to_pylist()
    assert ticker_u == sorted(set(ticker_u))

    # rendered as Crypto Lake tables: every diff once from the first bridged one on, every trade once
    [lake] = render_lake_from_capture([path], tmp_path / "lake").values()
    seq = pq.read_table(lake["book_delta_v2"])["sequence_number"].to_pylist()
    seq = [x for i, x in enumerate(seq) if i == 0 or x != seq[i - 1]]
    assert seq == sent_u[sent_u.index(seq[0]) :] and len(seq) > len(sent_u) // 2
    lake_ids = pq.read_table(lake["trades"])["id"].to_pylist()
    assert lake_ids == sorted(set(lake_ids)) and ("trades" not in id_kinds or len(lake_ids) > 0)

    # the batched path writes the same tables and the same summary
    res_c, tables_c = _golden(path, symbol, tmp_path / "golden_c", columnar=True)
    assert res_c.summary() | {"files": None} == s | {"files": None}
    assert all(tables_c[t].equals(tables[t]) for t in TABLES)


def test_a_duplicate_outside_a_handover_still_fails_integrity(tmp_path):
    """The same message twice on one connection (no hand-over declared) is not an overlap: it stays a
    duplicate trade id and a silent depth gap."""
    truth = simulate(SimConfig(symbol="BTC-USDT", duration_s=20, seed=5))
    stats = _capture(truth, venues.SPOT, tmp_path / "capture", max_connection_s=None)
    [path] = stats.files
    lines = list(iter_capture_lines(path))
    events = [orjson.loads(d)["type"] for _, _, s, d in lines if s == "rlx@event"]
    assert "handover_end" not in events and "reconnect" not in events
    # replay one trade and one depth diff of the middle of the capture right after themselves
    out = tmp_path / "doubled.jsonl.zst"
    doubled, seen = [], set()
    for i, (_, ns, stream, data) in enumerate(lines):
        doubled.append(encode_line(ns, stream, data))
        kind = stream.split("@", 1)[-1]
        if i > len(lines) // 2 and kind in ("trade", "depth@100ms") and kind not in seen:
            seen.add(kind)
            doubled.append(encode_line(ns, stream, data))
    out.write_bytes(zstandard.ZstdCompressor().compress(b"".join(doubled)))
    for columnar in (False, True):
        res, _ = _golden(out, "BTC-USDT", tmp_path / f"golden{columnar}", columnar=columnar)
        s = res.summary()
        assert s["trade_id_duplicates"] == 1 and s["silent_gaps"] == 1 and s["overlap_duplicates"] == 0
        assert not golden_integrity(s).passed
