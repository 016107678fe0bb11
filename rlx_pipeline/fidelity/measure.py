"""Fidelity of a day's unified stream against the golden samples, component by component.

- ``trades``: golden trades found in the reconstruction with the same id, price, quantity and taker side, and the
  reverse (reconstructed trades Binance never sent) inside the golden window. Whether the lake's trade ids are
  trade ids or aggTrade ids is detected from the data (the share of lake ids found among each).
- ``book``: at every golden depth update id ``u`` that the reconstruction also ends a message at, the golden
  book (rebuilt from its REST snapshot and diffs by Binance's rules) against the reconstructed top 1 / 5 / N.
  Levels beyond the range the reconstruction knows completely (``bid_known_min_price``/``ask_known_max_price``:
  never in a lake snapshot, never touched by a delta) are *unknowable*, counted apart and excluded from the
  blocking figure; everything inside it must be exact.
- ``book_ticker``: golden bookTicker messages at those update ids against the reconstructed best bid/ask.
- ``coverage``: golden update ids absent from the reconstruction and the reverse, inside the common window.
- ``timing``: reconstructed origin_time minus golden event time (and receive-time difference) of matched trades.

The blocking figure is the minimum over the components that could be measured (each with its numerator and
denominator in the report): a weak component cannot hide behind a strong one.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from rlx_pipeline.layout import DataLayout


@dataclass
class Ratio:
    matched: int = 0
    total: int = 0

    @property
    def value(self) -> float | None:
        return self.matched / self.total if self.total else None

    def to_dict(self) -> dict:
        return {"matched": self.matched, "total": self.total, "value": self.value}


@dataclass
class Fidelity:
    date: str
    symbol: str
    measurable: bool
    reason: str = ""
    trade_id_kind: str = "-"
    trades_golden_in_recon: Ratio = field(default_factory=Ratio)
    trades_recon_in_golden: Ratio = field(default_factory=Ratio)
    top1: Ratio = field(default_factory=Ratio)
    top5: Ratio = field(default_factory=Ratio)
    topn: Ratio = field(default_factory=Ratio)
    topn_raw: Ratio = field(default_factory=Ratio)  # all levels, unknowable ones included (not gated)
    unknowable_levels: int = 0
    book_ticker: Ratio = field(default_factory=Ratio)
    golden_ids_missing: int = 0
    recon_ids_not_in_golden: int = 0
    timing_ms: dict = field(default_factory=dict)
    mismatches: list[dict] = field(default_factory=list)
    timeline: list[tuple[int, int, int]] = field(default_factory=list)  # (minute, compared, mismatched)

    def components(self) -> dict[str, Ratio]:
        return {
            "trades_golden_in_recon": self.trades_golden_in_recon,
            "trades_recon_in_golden": self.trades_recon_in_golden,
            "book_top1": self.top1,
            "book_top5": self.top5,
            "book_topN": self.topn,
            "book_ticker": self.book_ticker,
        }

    @property
    def score(self) -> float | None:
        values = [r.value for r in self.components().values() if r.value is not None]
        return min(values) if values and self.measurable else None

    def to_dict(self) -> dict:
        return {
            "date": self.date,
            "symbol": self.symbol,
            "measurable": self.measurable,
            "reason": self.reason,
            "score": self.score,
            "trade_id_kind": self.trade_id_kind,
            "components": {k: v.to_dict() for k, v in self.components().items()},
            "book_topN_all_levels": self.topn_raw.to_dict(),
            "unknowable_levels": self.unknowable_levels,
            "golden_update_ids_missing_in_recon": self.golden_ids_missing,
            "recon_update_ids_not_in_golden": self.recon_ids_not_in_golden,
            "timing_ms": self.timing_ms,
            "first_mismatches": self.mismatches[:20],
        }


def _golden_book_states(layout: DataLayout, date: str, symbol: str, wanted: set[int], top_n: int):
    """Yield (u, event_ns, bids top-N, asks top-N) after each golden diff whose u is in ``wanted``."""
    snaps_path, depth_path = layout.golden("snapshots", date, symbol), layout.golden("depth", date, symbol)
    snaps = pl.read_parquet(snaps_path) if snaps_path.is_file() else None
    depth = pl.read_parquet(depth_path) if depth_path.is_file() else None
    if snaps is None or depth is None or not len(depth):
        return
    snap_msgs = (
        snaps.with_row_index("row")
        .group_by(["capture_ns", "source_file", "line_no", "last_update_id"], maintain_order=True)
        .agg("side_is_bid", "price", "size", pl.col("row").min())
        .with_columns(pl.lit(0).alias("kind"))
    )
    depth_msgs = (
        depth.with_row_index("row")
        .group_by(["capture_ns", "source_file", "line_no"], maintain_order=True)
        .agg(
            pl.col("event_time").first().cast(pl.Int64),
            pl.col("first_update_id").first(),
            pl.col("final_update_id").first(),
            pl.col("prev_final_update_id").first(),
            "side_is_bid",
            "price",
            "size",
            pl.col("row").min(),
        )
        .with_columns(pl.lit(1).alias("kind"))
    )
    order = sorted(
        [(r["capture_ns"], 0, r["line_no"], r) for r in snap_msgs.iter_rows(named=True)]
        + [(r["capture_ns"], 1, r["line_no"], r) for r in depth_msgs.iter_rows(named=True)],
        key=lambda x: (x[0], x[1], x[2]),
    )
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    last_id: int | None = None  # snapshot waiting to be bridged
    prev_u: int | None = None
    valid = False
    for _, kind, _, m in order:
        if kind == 0:
            bids, asks = {}, {}
            for b, p, q in zip(m["side_is_bid"], m["price"], m["size"], strict=True):
                (bids if b else asks)[p] = q
            last_id, valid, prev_u = m["last_update_id"], False, None
            continue
        U, u, pu = m["first_update_id"], m["final_update_id"], m["prev_final_update_id"]
        if last_id is not None:
            if u <= last_id:
                continue
            valid = (U <= last_id + 1 <= u) if pu is None else (U <= last_id <= u)
            last_id = None
        elif prev_u is not None:
            ok = (prev_u + 1 == U) if pu is None else (pu == prev_u)
            valid = valid and ok
        else:
            continue  # before any snapshot
        prev_u = u
        for b, p, q in zip(m["side_is_bid"], m["price"], m["size"], strict=True):
            if b is None:
                continue
            side = bids if b else asks
            if q:
                side[p] = q
            else:
                side.pop(p, None)
        if valid and u in wanted:
            yield (
                u,
                m["event_time"],
                heapq.nlargest(top_n, bids.items()),
                heapq.nsmallest(top_n, asks.items()),
            )


def compare_side(
    golden: list[tuple[int, int]], recon: list[tuple[int, int]], bound: int | None, is_bid: bool
) -> tuple[bool, int]:
    """(exact, unknowable levels) for the golden top levels against the reconstruction's (best first).

    A reconstructed level Binance did not have, or with another size, is wrong. A golden level the reconstruction
    lacks is wrong inside the range the reconstruction knows completely (``bound``) and unknowable beyond it.
    """
    j, unknowable = 0, 0
    for p, q in golden:
        if j < len(recon) and (recon[j][0] > p if is_bid else recon[j][0] < p):
            return False, unknowable
        if j < len(recon) and recon[j][0] == p:
            if recon[j][1] != q:
                return False, unknowable
            j += 1
        elif bound is not None and (p >= bound if is_bid else p <= bound):
            return False, unknowable
        else:
            unknowable += 1
    return True, unknowable


def measure(layout: DataLayout, date: str, symbol: str, top_n: int) -> Fidelity:
    uni_path = layout.unified(date, symbol)
    g_trades_path = layout.golden("trades", date, symbol)
    f = Fidelity(date, symbol, measurable=False)
    if not uni_path.is_file():
        f.reason = f"no unified stream at {uni_path}"
        return f
    g_trades = pl.read_parquet(g_trades_path) if g_trades_path.is_file() else pl.DataFrame()
    g_depth_path = layout.golden("depth", date, symbol)
    g_depth_u = (
        pl.scan_parquet(g_depth_path)
        .select("final_update_id", pl.col("event_time").cast(pl.Int64))
        .unique()
        .collect()
        if g_depth_path.is_file()
        else pl.DataFrame({"final_update_id": [], "event_time": []})
    )
    if not len(g_trades) and not len(g_depth_u):
        f.reason = "no golden samples for this day: fidelity is not measurable"
        return f
    f.measurable = True
    times = []
    if len(g_trades):
        times += [g_trades["trade_time"].cast(pl.Int64).min(), g_trades["trade_time"].cast(pl.Int64).max()]
    if len(g_depth_u):
        times += [g_depth_u["event_time"].min(), g_depth_u["event_time"].max()]
    w0, w1 = min(times), max(times)
    uni = pl.scan_parquet(uni_path)

    # --- trades -------------------------------------------------------------------------------------
    r_trades = (
        uni.filter(pl.col("event_type") == 2)
        .filter(pl.col("origin_time").cast(pl.Int64).is_between(w0, w1))
        .select(
            "trade_id",
            "price",
            "size",
            "side_is_bid",
            pl.col("origin_time").cast(pl.Int64).alias("t"),
            pl.col("received_time").cast(pl.Int64).alias("r"),
        )
        .collect()
    )
    if len(g_trades) and len(r_trades):
        g = g_trades.select(
            "trade_id",
            "price",
            pl.col("quantity").alias("size"),
            (~pl.col("is_buyer_maker")).alias("side_is_bid"),
            pl.col("trade_time").cast(pl.Int64).alias("gt"),
            pl.col("capture_ns").alias("gr"),
        )
        agg_path = layout.golden("agg_trades", date, symbol)
        agg_ids = (
            pl.read_parquet(agg_path, columns=["agg_trade_id"])["agg_trade_id"]
            if agg_path.is_file()
            else pl.Series([], dtype=pl.Int64)
        )
        in_trade = r_trades["trade_id"].is_in(g["trade_id"].implode()).mean()
        in_agg = r_trades["trade_id"].is_in(agg_ids.implode()).mean() if len(agg_ids) else 0.0
        f.trade_id_kind = "aggTrade ids" if (in_agg or 0) > (in_trade or 0) else "trade ids"
        joined = g.join(r_trades, on="trade_id", how="left", suffix="_r")
        exact = joined.filter(
            (pl.col("price") == pl.col("price_r"))
            & (pl.col("size") == pl.col("size_r"))
            & (pl.col("side_is_bid") == pl.col("side_is_bid_r"))
        )
        f.trades_golden_in_recon = Ratio(len(exact), len(g))
        back = r_trades.join(g, on="trade_id", how="left", suffix="_g")
        f.trades_recon_in_golden = Ratio(int(back["gt"].is_not_null().sum()), len(r_trades))
        for row in (
            joined.filter(
                pl.col("price_r").is_null()
                | (pl.col("price") != pl.col("price_r"))
                | (pl.col("size") != pl.col("size_r"))
            )
            .head(10)
            .iter_rows(named=True)
        ):
            f.mismatches.append(
                {
                    "component": "trade",
                    **{k: row[k] for k in ("trade_id", "price", "size", "price_r", "size_r")},
                }
            )
        m = exact.with_columns(
            ((pl.col("t") - pl.col("gt")) / 1e6).alias("dt"), ((pl.col("r") - pl.col("gr")) / 1e6).alias("dr")
        )
        if len(m):

            def dist(x: np.ndarray) -> dict[str, float]:
                out = {f"p{q}": float(np.percentile(x, q)) for q in (1, 50, 99)}
                out.update(min=float(x.min()), max=float(x.max()), nonzero=int((x != 0).sum()))
                return out

            f.timing_ms = {
                "origin_minus_golden_trade_time": dist(m["dt"].to_numpy()),
                "lake_receive_minus_capture": dist(m["dr"].to_numpy()),
            }
    elif len(g_trades):
        f.trades_golden_in_recon = Ratio(0, len(g_trades))

    # --- book -----------------------------------------------------------------------------------------
    book_cols = [f"{s}_{i}_{w}" for s in ("bid", "ask") for i in range(top_n) for w in ("price", "size")]
    r_msgs = (
        uni.filter((pl.col("event_type") == 1) & pl.col("is_last_in_message"))
        .select(
            "sequence_number",
            pl.col("origin_time").cast(pl.Int64).alias("t"),
            "bid_known_min_price",
            "ask_known_max_price",
            *book_cols,
        )
        .collect()
    )
    r_seq = set(r_msgs["sequence_number"].to_list())
    g_u = set(g_depth_u["final_update_id"].to_list())
    if r_seq and g_u:
        lo_u, hi_u = max(min(r_seq), min(g_u)), min(max(r_seq), max(g_u))
        f.golden_ids_missing = sum(1 for u in g_u if lo_u <= u <= hi_u and u not in r_seq)
        f.recon_ids_not_in_golden = sum(1 for u in r_seq if lo_u <= u <= hi_u and u not in g_u)
    shared = r_seq & g_u
    rows = {
        r["sequence_number"]: r
        for r in r_msgs.filter(pl.col("sequence_number").is_in(list(shared))).iter_rows(named=True)
    }
    golden_tops: dict[int, tuple] = {}
    timeline: dict[int, list[int]] = {}
    for u, event_ns, gb, ga in _golden_book_states(layout, date, symbol, shared, top_n):
        r = rows[u]
        rb = [
            (r[f"bid_{i}_price"], r[f"bid_{i}_size"]) for i in range(top_n) if r[f"bid_{i}_price"] is not None
        ]
        ra = [
            (r[f"ask_{i}_price"], r[f"ask_{i}_size"]) for i in range(top_n) if r[f"ask_{i}_price"] is not None
        ]
        kb, ka = r["bid_known_min_price"], r["ask_known_max_price"]
        golden_tops[u] = (gb[:1], ga[:1])
        for depth, ratio in ((1, f.top1), (5, f.top5), (top_n, f.topn)):
            ok_b, unk_b = compare_side(gb[:depth], rb, kb, True)
            ok_a, unk_a = compare_side(ga[:depth], ra, ka, False)
            ok = ok_b and ok_a
            ratio.total += 1
            ratio.matched += ok
            if depth == top_n:
                f.unknowable_levels += unk_b + unk_a
                minute = (event_ns // 60_000_000_000) % 1440
                tl = timeline.setdefault(minute, [0, 0])
                tl[0] += 1
                tl[1] += 0 if ok else 1
                if not ok and len(f.mismatches) < 40:
                    f.mismatches.append(
                        {
                            "component": "book",
                            "u": u,
                            "golden_bids": gb[:3],
                            "recon_bids": rb[:3],
                            "golden_asks": ga[:3],
                            "recon_asks": ra[:3],
                            "known": [kb, ka],
                        }
                    )
        raw_ok = rb == gb[: len(rb)] and ra == ga[: len(ra)] and len(rb) == len(gb) and len(ra) == len(ga)
        f.topn_raw.total += 1
        f.topn_raw.matched += raw_ok
    f.timeline = sorted((k, v[0], v[1]) for k, v in timeline.items())

    # --- bookTicker -------------------------------------------------------------------------------------
    bt_path = layout.golden("book_ticker", date, symbol)
    if bt_path.is_file():
        bt = pl.read_parquet(bt_path).filter(pl.col("update_id").is_in(list(shared)))
        for row in bt.iter_rows(named=True):
            r = rows[row["update_id"]]
            ok = (r["bid_0_price"], r["bid_0_size"], r["ask_0_price"], r["ask_0_size"]) == (
                row["bid_price"],
                row["bid_qty"],
                row["ask_price"],
                row["ask_qty"],
            )
            f.book_ticker.total += 1
            f.book_ticker.matched += ok
            if not ok and len(f.mismatches) < 60:
                f.mismatches.append(
                    {
                        "component": "book_ticker",
                        "u": row["update_id"],
                        "golden": [row["bid_price"], row["ask_price"]],
                        "recon": [r["bid_0_price"], r["ask_0_price"]],
                    }
                )
    return f


def report_paths(layout: DataLayout, date: str, symbol: str) -> Path:
    return layout.report_dir("fidelity", date, symbol)
