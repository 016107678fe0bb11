"""Named, seeded faults on the renderings of a simulated market: for tests, and for users reproducing problems.

Lake faults take and return the raw Crypto Lake tables (``MarketTruth.lake_tables()``); capture faults take and
return capture lines ``(capture_ns, stream, data)``. Each returns what it changed, so a test knows the exact
expected effect.

| name                  | what it does                                                                   |
| --------------------- | ------------------------------------------------------------------------------ |
| drop_delta_messages   | removes every row of ``n`` random book_delta_v2 messages (sequence gaps)      |
| alter_delta_size      | multiplies the size of ``n`` random delta rows by ``factor``                  |
| shift_trade_sizes     | multiplies every trade size by ``factor`` (a shifted size distribution)       |
| drop_trades           | removes ``n`` random trades (missing trade ids)                               |
| shift_trade_times     | adds ``seconds`` to the origin time of ``n`` random trades                    |
| corrupt_rows          | negative size, NaN size and a crossed price on random delta rows             |
| zero_origin_times     | sets ``timestamp`` to 0 on ``n`` random trades                                |
| reorder_delta_messages| swaps ``n`` random pairs of adjacent book_delta_v2 messages (rows move whole)  |
| drop_delta_message    | removes every row of one chosen book_delta_v2 message (one vendor gap)        |
| outage                | removes every book_delta_v2 and book row of a time window (a vendor outage)   |
| drop_depth_frames     | removes ``n`` depth frames from a capture (a silent gap)                      |
| duplicate_frames      | repeats ``n`` random frames right after themselves                            |
| reorder_frames        | swaps ``n`` random pairs of adjacent depth frames in a capture                |
| remove_day            | deletes a day's lake files of one symbol (a missing day)                      |
| truncate_file         | cuts a file to ``keep`` of its bytes (a truncated parquet or capture)         |

Server disconnects mid-stream are the exchange's: ``ExchangeServer.drop_clients()`` or ``drop_at_s``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Tables = dict[str, pa.Table]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def drop_delta_messages(tables: Tables, n: int, seed: int = 0) -> tuple[Tables, list[int]]:
    deltas = tables["book_delta_v2"]
    seqs = np.unique(deltas["sequence_number"].to_numpy())
    # never the first or last message: the day must still have a start and an end
    gone = np.sort(_rng(seed).choice(seqs[1:-1], n, replace=False))
    keep = pc.invert(pc.is_in(deltas["sequence_number"], pa.array(gone)))
    return {**tables, "book_delta_v2": deltas.filter(keep)}, gone.tolist()


def drop_delta_message(tables: Tables, sequence_number: int) -> Tables:
    """Every row of the book_delta_v2 message ``sequence_number`` removed (one lost message, as a vendor gap)."""
    deltas = tables["book_delta_v2"]
    return {
        **tables,
        "book_delta_v2": deltas.filter(pc.not_equal(deltas["sequence_number"], sequence_number)),
    }


def outage(tables: Tables, start_ns: int, seconds: float) -> tuple[Tables, list[int]]:
    """Every book_delta_v2 and book row with ``timestamp`` in [start_ns, start_ns + seconds) removed; returns the
    sequence numbers of the delta messages lost."""
    end = start_ns + int(seconds * 1e9)
    out = dict(tables)
    for name in ("book_delta_v2", "book"):
        t = tables[name]
        ts = t["timestamp"].cast(pa.int64())
        inside = pc.and_(pc.greater_equal(ts, start_ns), pc.less(ts, end))
        if name == "book_delta_v2":
            gone = np.unique(t.filter(inside)["sequence_number"].to_numpy()).tolist()
        out[name] = t.filter(pc.invert(inside))
    return out, gone


def reorder_delta_messages(tables: Tables, n: int, seed: int = 0) -> tuple[Tables, list[int]]:
    """Swap ``n`` disjoint pairs of adjacent messages (all rows of each); returns the first message of each pair."""
    deltas = tables["book_delta_v2"]
    seq = deltas["sequence_number"].to_numpy()
    starts = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
    bounds = np.r_[starts, len(seq)]
    k = len(starts)
    # pair i is messages (2i+1, 2i+2): disjoint, never the first or the last message of the day
    pairs = np.sort(_rng(seed).choice((k - 2) // 2, n, replace=False)) * 2 + 1
    order = np.arange(k)
    order[pairs], order[pairs + 1] = pairs + 1, pairs
    rows = np.concatenate([np.arange(bounds[m], bounds[m + 1]) for m in order])
    return {**tables, "book_delta_v2": deltas.take(pa.array(rows))}, seq[starts[pairs]].tolist()


def alter_delta_size(
    tables: Tables, n: int = 1, factor: float = 2.0, seed: int = 0, rows: list[int] | None = None
) -> tuple[Tables, list[int]]:
    """``n`` random non-delete rows (or exactly ``rows``) get their size multiplied by ``factor``."""
    deltas = tables["book_delta_v2"]
    size = deltas["size"].to_numpy().copy()
    if rows is None:
        rows = np.sort(_rng(seed).choice(np.flatnonzero(size > 0), n, replace=False))
    rows = np.asarray(rows, dtype=np.int64)
    size[rows] *= factor
    return {
        **tables,
        "book_delta_v2": deltas.set_column(deltas.schema.get_field_index("size"), "size", pa.array(size)),
    }, rows.tolist()


def shift_trade_sizes(tables: Tables, factor: float = 1.5) -> Tables:
    trades = tables["trades"]
    amount = pc.multiply(trades["amount"], factor)
    return {**tables, "trades": trades.set_column(trades.schema.get_field_index("amount"), "amount", amount)}


def drop_trades(tables: Tables, n: int, seed: int = 0) -> tuple[Tables, list[int]]:
    trades = tables["trades"]
    ids = trades["id"].to_numpy()
    gone = np.sort(_rng(seed).choice(ids[1:-1], n, replace=False))
    return {
        **tables,
        "trades": trades.filter(pc.invert(pc.is_in(trades["id"], pa.array(gone)))),
    }, gone.tolist()


def shift_trade_times(tables: Tables, n: int, seconds: float, seed: int = 0) -> tuple[Tables, list[int]]:
    trades = tables["trades"]
    ts = trades["timestamp"].to_numpy().copy()
    rows = np.sort(_rng(seed).choice(len(ts), n, replace=False))
    ts[rows] += int(seconds * 1e9)
    i = trades.schema.get_field_index("timestamp")
    return {**tables, "trades": trades.set_column(i, "timestamp", pa.array(ts))}, trades["id"].to_numpy()[
        rows
    ].tolist()


def zero_origin_times(tables: Tables, n: int, seed: int = 0) -> Tables:
    trades = tables["trades"]
    ts = trades["timestamp"].to_numpy().copy()
    ts[_rng(seed).choice(len(ts), n, replace=False)] = 0
    return {
        **tables,
        "trades": trades.set_column(trades.schema.get_field_index("timestamp"), "timestamp", pa.array(ts)),
    }


def corrupt_rows(tables: Tables, seed: int = 0) -> Tables:
    deltas = tables["book_delta_v2"]
    size = deltas["size"].to_numpy().copy()
    price = deltas["price"].to_numpy().copy()
    a, b, c = _rng(seed).choice(len(size), 3, replace=False)
    size[a] = -1.0
    size[b] = np.nan
    price[c] = price[c] * 10  # far through the other side
    deltas = deltas.set_column(deltas.schema.get_field_index("size"), "size", pa.array(size))
    deltas = deltas.set_column(deltas.schema.get_field_index("price"), "price", pa.array(price))
    return {**tables, "book_delta_v2": deltas}


Lines = list[tuple[int, str, bytes]]


def drop_depth_frames(lines: Lines, n: int, seed: int = 0) -> tuple[Lines, list[int]]:
    idx = [i for i, (_, s, _) in enumerate(lines) if s.endswith("@depth@100ms")]
    gone = set(_rng(seed).choice(idx[1:-1], n, replace=False).tolist())
    return [x for i, x in enumerate(lines) if i not in gone], sorted(gone)


def duplicate_frames(lines: Lines, n: int, seed: int = 0) -> Lines:
    dup = set(_rng(seed).choice(range(2, len(lines) - 1), n, replace=False).tolist())
    out: Lines = []
    for i, x in enumerate(lines):
        out.append(x)
        if i in dup:
            out.append(x)
    return out


def reorder_frames(lines: Lines, n: int, seed: int = 0) -> tuple[Lines, list[int]]:
    """Swap ``n`` disjoint pairs of adjacent depth frames (capture times stay in file order)."""
    idx = [i for i, (_, s, _) in enumerate(lines) if s.endswith("@depth@100ms")]
    picked = np.sort(_rng(seed).choice((len(idx) - 2) // 2, n, replace=False)) * 2 + 1
    out = list(lines)
    for j in picked.tolist():
        a, b = idx[j], idx[j + 1]
        out[a], out[b] = (lines[a][0], *lines[b][1:]), (lines[b][0], *lines[a][1:])
    return out, [idx[j] for j in picked.tolist()]


def remove_day(lake_root: str | Path, symbol: str, date: str) -> list[Path]:
    """Delete the day's files of every table for ``symbol`` (what a lake with a missing day looks like)."""
    from rlx_pipeline.layout import symbol_lake_key

    gone = []
    for table in ("trades", "book", "book_delta_v2"):
        path = Path(lake_root) / symbol_lake_key(table, symbol, date)
        if path.exists():
            path.unlink()
            gone.append(path)
    return gone


def truncate_file(path: str | Path, keep: float = 0.5) -> Path:
    p = Path(path)
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])
    return p
