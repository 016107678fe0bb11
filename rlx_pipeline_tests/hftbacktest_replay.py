"""hftbacktest's own backtest loop over an exported .npz, held against the unified stream it came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

from rlx_pipeline import fixed_point, venues


@njit
def _loop(hbt, ts, bid, ask, tr_i, tr_f):
    """Every step of hftbacktest's feed (all local events of one timestamp), until the end of the data: the
    time, best bid and ask ticks after it, and the trades it delivered (ev, px, qty, local time)."""
    n = m = 0
    while True:
        rc = hbt.wait_next_feed(False, 1 << 62)
        d = hbt.depth(0)
        ts[n], bid[n], ask[n] = hbt.current_timestamp, d.best_bid_tick, d.best_ask_tick
        n += 1
        last = hbt.last_trades(0)
        for i in range(len(last)):
            tr_i[m, 0], tr_i[m, 1], tr_f[m, 0], tr_f[m, 1] = (
                last[i].ev,
                last[i].local_ts,
                last[i].px,
                last[i].qty,
            )
            m += 1
        hbt.clear_last_trades(0)
        if rc != 2:
            return n, m, rc


def replay(npz: Path, symbol: str, rows: int) -> dict[str, np.ndarray]:
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

    inst = venues.for_symbol(symbol).instrument(symbol)  # the venue's tick and lot steps
    asset = (
        BacktestAsset()
        .data([str(npz)])
        .linear_asset(1.0)
        .constant_order_latency(0, 0)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(0.0, 0.0)
        .tick_size(inst.tick_size / fixed_point.UNIT)
        .lot_size(inst.lot_size / fixed_point.UNIT)
        .last_trades_capacity(1 << 20)
    )
    hbt = HashMapMarketDepthBacktest([asset])
    ts, bid, ask = np.zeros(rows, np.int64), np.zeros(rows, np.int64), np.zeros(rows, np.int64)
    tr_i, tr_f = np.zeros((rows, 2), np.int64), np.zeros((rows, 2), np.float64)
    n, m, rc = _loop(hbt, ts, bid, ask, tr_i, tr_f)
    hbt.close()
    assert rc == 1, f"hftbacktest stopped with code {rc}"
    return {"ts": ts[:n], "bid": bid[:n], "ask": ask[:n], "trade_ev_ts": tr_i[:m], "trade_px_qty": tr_f[:m]}


def compare(events: Path, book: Path, npz: Path, symbol: str, offset_ns: int = 0) -> dict[str, int]:
    """hftbacktest's best bid/ask after each local timestamp at which the stream publishes a book state equals the
    stream's (the last state of that timestamp); trades equal in count, price, size and side. Returns counts."""
    inst = venues.for_symbol(symbol).instrument(symbol)  # the venue's tick and lot steps
    ev = pl.read_parquet(events, columns=["received_time", "event_type", "side_is_bid", "price", "size"])
    bk = pl.read_parquet(book, columns=["event_index", "bid_0_price", "ask_0_price"])
    rows = len(ev) + 16
    got = replay(npz, symbol, rows)
    t_state = ev["received_time"].dt.epoch("ns").to_numpy()[bk["event_index"].to_numpy()] + offset_ns
    assert (np.diff(t_state) >= 0).all(), "book states out of local-time order: not comparable step by step"
    # hftbacktest reports the end of the data before applying the events of the data's last local timestamp:
    # states and trades at that one timestamp are not compared (every earlier one is)
    end = got["ts"][-1]
    assert np.unique(t_state[t_state > end]).size <= 1
    last = np.r_[t_state[1:] != t_state[:-1], True] & (t_state <= end)
    t = t_state[last]
    want_bid = bk["bid_0_price"].to_numpy()[last] // inst.tick_size
    want_ask = bk["ask_0_price"].to_numpy()[last] // inst.tick_size
    step = np.searchsorted(got["ts"], t, "left")
    assert (step < len(got["ts"])).all() and (got["ts"][step] == t).all(), (
        "a book state's time is not a feed step"
    )
    bad = np.flatnonzero((got["bid"][step] != want_bid) | (got["ask"][step] != want_ask))
    assert not len(bad), [
        (int(t[k]), int(want_bid[k]), int(got["bid"][step[k]]), int(want_ask[k]), int(got["ask"][step[k]]))
        for k in bad[:5]
    ]
    # trades: hftbacktest delivers them in local-time order; the stream is in exchange-time order
    tr = ev.filter((pl.col("event_type") == 2) & (pl.col("received_time").dt.epoch("ns") + offset_ns <= end))
    want = sorted(
        zip(
            (tr["received_time"].dt.epoch("ns") + offset_ns).to_list(),
            (tr["price"] // inst.tick_size).to_list(),
            (tr["size"] // inst.lot_size).to_list(),
            tr["side_is_bid"].to_list(),
            strict=True,
        )
    )
    gi, gf = got["trade_ev_ts"], got["trade_px_qty"]
    buy = (gi[:, 0] & (1 << 29)) != 0
    have = sorted(
        zip(
            gi[:, 1].tolist(),
            np.rint(gf[:, 0] / (inst.tick_size / fixed_point.UNIT)).astype(np.int64).tolist(),
            np.rint(gf[:, 1] / (inst.lot_size / fixed_point.UNIT)).astype(np.int64).tolist(),
            buy.tolist(),
            strict=True,
        )
    )
    assert have == want
    return {
        "book_states": len(bk),
        "compared_steps": int(len(t)),
        "trades": len(want),
        "feed_steps": len(got["ts"]),
    }
