"""Captures rendered as Crypto Lake tables: Binance's sync rules (a diff written before its snapshot line bridges it;
USD-M keeps u == lastUpdateId), batches written in bounded memory, the real cryptofeed captures."""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow.parquet as pq

from rlx_pipeline.capture.importers import import_files
from rlx_pipeline.formats.capture_file import iter_capture_lines, read_index, write_capture
from rlx_pipeline.golden import lake_render
from rlx_pipeline.golden.lake_render import render_lake_from_capture
from rlx_pipeline.simulator import SimConfig, simulate


def _ints(col) -> np.ndarray:
    return np.round(col.to_numpy() * 1e8).astype(np.int64)


def test_a_diff_written_before_its_snapshot_is_replayed_not_lost(tmp_path, monkeypatch):
    truth = simulate(SimConfig(duration_s=20, seed=3))
    lines = list(truth.capture_lines())
    i_snap = next(i for i, (_, s, _) in enumerate(lines) if s.endswith("@depthSnapshot"))
    snap = lines.pop(i_snap)
    depth = [i for i, (_, s, _) in enumerate(lines) if s.endswith("@depth@100ms")]
    # the REST response lands after the first two diffs (they arrived while the request was in flight)
    at = depth[1] + 1
    lines.insert(at, (lines[depth[1]][0], snap[1], snap[2]))
    path = write_capture(tmp_path / "c.jsonl.zst", lines)
    monkeypatch.setattr(lake_render, "FLUSH_ROWS", 1_000)  # many batches: the same table
    out = render_lake_from_capture([path], tmp_path / "lake")
    got = pq.read_table(out[("BTC-USDT", "2024-08-09")]["book_delta_v2"])
    want = truth.lake_tables()["book_delta_v2"]
    assert got.num_rows == want.num_rows > 1_000
    for name in ("sequence_number", "side_is_bid"):
        assert got.column(name).to_pylist() == want.column(name).to_pylist()
    for name in ("price", "size"):
        assert (_ints(got.column(name)) == _ints(want.column(name))).all()
    book = pq.read_table(out[("BTC-USDT", "2024-08-09")]["book"])
    assert book.column("sequence_number")[0].as_py() == truth.market.initial_update_id


def test_usdm_captures_bridge_on_u_equal_to_last_update_id(tmp_path, real_samples):
    cf = real_samples / "cryptofeed"
    [path] = import_files([cf / "BINANCE_FUTURES.ws.1.0", cf / "BINANCE_FUTURES.http.0.0"], tmp_path / "cap")
    assert read_index(path)["venue"] == "binance_usdm"  # the importer read it from the recording's URL
    last: dict[str, int] = {}
    expected: dict[str, set[int]] = {}
    for _, _, stream, data in iter_capture_lines(path):
        sym, _, kind = stream.partition("@")
        msg = orjson.loads(data)
        if kind == "depthSnapshot":
            last[sym] = msg["lastUpdateId"]
        elif kind.startswith("depth") and sym in last and msg["u"] >= last[sym] and (msg["b"] or msg["a"]):
            expected.setdefault(sym, set()).add(msg["u"])  # every diff with levels from the bridging one on
    out = render_lake_from_capture([path], tmp_path / "lake")
    for (symbol, _), tables in out.items():
        assert "/exchange=BINANCE_FUTURES/" in str(tables["book_delta_v2"])
        sym = symbol.removesuffix("-PERP").replace("-", "").lower()
        seqs = set(pq.read_table(tables["book_delta_v2"]).column("sequence_number").to_pylist())
        assert seqs == expected[sym], symbol
    assert {s for (s, _) in out} >= {"AKRO-USDT-PERP", "CTK-USDT-PERP", "KEEP-USDT-PERP", "SUSHI-USDT-PERP"}
