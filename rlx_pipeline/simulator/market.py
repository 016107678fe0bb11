"""A seeded limit-order-book market: the ground truth every rendering (Binance, Crypto Lake, capture) comes from.

The model, per 100 ms step (Binance's depth@100ms batching):

- a latent fair price follows a random walk with heavy-tailed jumps; the quotes follow it, so levels that the
  price walks through are removed and new top levels appear (the book is never crossed);
- trades arrive from a self-exciting (Hawkes-like) intensity: bursty, clustered inter-arrival times, not Poisson;
  the taker side leans with the fair price; sizes are lognormal below ``size_xmin`` and Pareto above it, with a
  density exponent ``tail_alpha`` (docs/statistics.md: alpha ~ 2.4, xmin ~ 0.07 BTC for spot BTCUSDT);
  a taker walks the book level by level, one trade per level, contiguous trade ids;
- limit-order arrivals and cancels touch levels near the top (geometric distance), with a lognormal count per
  step so levels per depth message have a long tail (BTCUSDT: median ~16, mean ~36);
- every level change takes one Binance update id; a depth message carries the final quantity of every price
  changed in its window with ``U`` = first and ``u`` = last update id; bookTicker is sent on every change of the
  best bid or ask, with the update id of that change.

Everything is integers: prices in ticks, sizes in lots; converted to fixed point (1e-8) at the edges.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from rlx_pipeline import instruments, venues

NS_PER_MS = 1_000_000
STEP_NS = 100 * NS_PER_MS


@dataclass(frozen=True)
class SimConfig:
    """One symbol over one time window. Rates are per second; defaults are BTCUSDT-like (Aug 2024)."""

    symbol: str = "BTC-USDT"
    start: str = "2024-08-09T00:00:00Z"
    duration_s: float = 300.0
    seed: int = 7
    mid_price: float | None = None  # default: per symbol (BTC 60,000, ETH 2,680, else 100)
    levels_per_side: int = 400
    trade_rate: float = 15.0  # mean taker orders/s (Hawkes); ~2 trades each (maker orders hit)
    trade_excitation: float = 0.8  # branching ratio of the Hawkes intensity (0 = Poisson)
    trade_decay_s: float = 2.0  # excitation half-life scale
    size_xmin: float = 0.07  # base-asset units; Pareto tail above
    tail_alpha: float = 2.4  # density exponent of the tail (Clauset)
    tail_share: float = 0.12  # share of trades in the tail
    levels_median: float = 12.0  # level changes per depth message: lognormal median ...
    levels_sigma: float = 1.65  # ... and sigma; with repeats of a price merged: median ~16, mean ~34
    fair_sigma_ticks: float = 6.0  # std of the fair price's move per step, in ticks
    receive_lag_ms: float = 8.0  # median Crypto Lake receive lag (lognormal)
    capture_lag_ms: float = 3.0  # median capture receive lag (lognormal)
    book_snapshot_every_s: float = 10.0  # Crypto Lake `book` rows (plus one before the first delta)

    @property
    def instrument(self) -> instruments.Instrument:
        return venues.for_symbol(self.symbol).instrument(self.symbol)  # the venue's steps

    @property
    def start_ns(self) -> int:
        t = dt.datetime.fromisoformat(self.start.replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000

    def default_mid(self) -> float:
        if self.mid_price is not None:
            return self.mid_price
        base = self.symbol.upper().split("-")[0]
        return {"BTC": 60_000.0, "ETH": 2_680.0, "SOL": 150.0, "BNB": 520.0}.get(base, 100.0)


@dataclass
class DepthMessage:
    U: int
    u: int
    event_ns: int  # E
    bids: list[tuple[int, int]]  # (price ticks, qty lots), final quantity per price in the window
    asks: list[tuple[int, int]]


@dataclass
class Trade:
    trade_id: int
    agg_id: int
    price: int  # ticks
    qty: int  # lots
    taker_buys: bool
    trade_ns: int  # T
    event_ns: int  # E


@dataclass
class Ticker:
    u: int
    event_ns: int  # not in the message (bookTicker has no E); used to order the frames
    bid: tuple[int, int]
    ask: tuple[int, int]


@dataclass
class Market:
    """The raw event sequence of one simulated window (integers: ticks and lots)."""

    config: SimConfig
    tick: int  # fixed point per tick
    lot: int  # fixed point per lot
    initial_update_id: int
    initial_bids: dict[int, int]
    initial_asks: dict[int, int]
    depth: list[DepthMessage] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    tickers: list[Ticker] = field(default_factory=list)


class _Book:
    """Price (ticks) -> quantity (lots) per side, with the best prices kept current."""

    def __init__(self, bids: dict[int, int], asks: dict[int, int]) -> None:
        self.bids, self.asks = bids, asks
        self.best_bid = max(bids)
        self.best_ask = min(asks)

    def set(self, is_bid: bool, price: int, qty: int) -> None:
        side = self.bids if is_bid else self.asks
        if qty > 0:
            side[price] = qty
            if is_bid and price > self.best_bid:
                self.best_bid = price
            elif not is_bid and price < self.best_ask:
                self.best_ask = price
        elif price in side:
            del side[price]
            if is_bid and price == self.best_bid:
                self.best_bid = max(side) if side else 0
            elif not is_bid and price == self.best_ask:
                self.best_ask = min(side) if side else 1 << 62

    def top(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return (self.best_bid, self.bids.get(self.best_bid, 0)), (
            self.best_ask,
            self.asks.get(self.best_ask, 0),
        )


def _level_size(rng: np.random.Generator, lots_per_unit: float) -> int:
    """A resting level's quantity: lognormal around ~0.3 base units, at least one lot."""
    return max(1, int(rng.lognormal(math.log(0.3), 1.3) * lots_per_unit))


def _trade_size(rng: np.random.Generator, c: SimConfig, lots_per_unit: float) -> int:
    if rng.random() < c.tail_share:
        # Pareto with density exponent alpha: survival x^-(alpha-1) above xmin.
        x = c.size_xmin * (1.0 - rng.random()) ** (-1.0 / (c.tail_alpha - 1.0))
    else:
        while True:
            x = rng.lognormal(math.log(c.size_xmin / 8), 1.2)
            if x < c.size_xmin:
                break
    return max(1, int(round(x * lots_per_unit)))


def simulate_market(c: SimConfig) -> Market:
    """Run the model over the whole window in memory; deterministic for ``c.seed``."""
    return next(iter_market(c))


def _iso(ns: int) -> str:
    t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)
    return t.isoformat().replace("+00:00", "Z")


def iter_market(c: SimConfig, chunk_s: float | None = None) -> Iterator[Market]:
    """Run the model and hand it out in windows of ``chunk_s`` seconds (default: one window, the whole run).

    The run is the same whatever the chunking (one random stream, the state carried across windows): window k's
    ``initial_*`` book and update id are the state at its start and its ``config`` has its start and duration, so
    concatenating the windows' events gives exactly ``simulate_market(c)``. Memory follows one window: a full
    BTCUSDT-scale day streams to disk hour by hour (``render.write_lake_stream``).
    """
    rng = np.random.default_rng(c.seed)
    inst = c.instrument
    tick, lot = inst.tick_size, inst.lot_size
    lots_per_unit = 10**8 / lot
    mid_ticks = int(round(c.default_mid() * 10**8 / tick))

    # Initial book: every tick near the top, wider spacing deeper (as real books thin out).
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    offset = 0
    for i in range(c.levels_per_side):
        offset += 1 if i < 30 else int(rng.integers(1, 2 + i // 40))
        bids[mid_ticks - offset] = _level_size(rng, lots_per_unit)
        asks[mid_ticks + offset] = _level_size(rng, lots_per_unit)
    update_id = int(rng.integers(10**10, 4 * 10**10))
    steps = int(round(c.duration_s * 10))
    chunk_steps = steps if chunk_s is None else max(1, int(round(chunk_s * 10)))
    first = c if chunk_steps >= steps else replace(c, duration_s=chunk_steps / 10)
    market = Market(first, tick, lot, update_id, dict(bids), dict(asks))
    book = _Book(bids, asks)
    fair = float(mid_ticks)

    t0 = c.start_ns
    trade_id = int(rng.integers(10**9, 3 * 10**9))
    agg_id = int(rng.integers(10**8, 9 * 10**8))
    # Hawkes intensity: lambda = base + excitation; each trade adds jump, excitation decays per step.
    base = c.trade_rate * (1.0 - c.trade_excitation)
    decay = math.exp(-0.1 / c.trade_decay_s)
    jump = c.trade_excitation * (1.0 - decay) / 0.1  # mean intensity added per trade, integrated = branching
    excitation = 0.0
    regime = 0.4  # 0.4 (quiet) or 1.6 (busy): mean 1
    last_top = book.top()
    last_ticker_ns = 0
    last_trade_event_ns = 0

    for s in range(steps):
        step_start = t0 + s * STEP_NS
        if s and s % chunk_steps == 0:
            yield market
            window = min(chunk_steps, steps - s) / 10
            market = Market(
                replace(c, start=_iso(step_start), duration_s=window),
                tick,
                lot,
                update_id,
                dict(book.bids),
                dict(book.asks),
            )
        changes: dict[tuple[bool, int], int] = {}
        first_uid = update_id + 1

        def change(is_bid: bool, price: int, qty: int, at_ns: int) -> None:
            nonlocal update_id, last_top, last_ticker_ns
            update_id += 1
            book.set(is_bid, price, qty)
            changes[(is_bid, price)] = qty  # noqa: B023 - called only inside this step
            top = book.top()
            if top != last_top:
                last_top = top
                last_ticker_ns = max(at_ns, last_ticker_ns)  # bookTicker is sent in update-id order
                market.tickers.append(Ticker(update_id, last_ticker_ns, top[0], top[1]))  # noqa: B023 - the current window

        # 1. Fair price: Gaussian moves with occasional jumps (heavy-tailed returns).
        move = rng.normal(0.0, c.fair_sigma_ticks)
        if rng.random() < 0.01:
            move *= 8
        fair += move
        bid_target = int(math.floor(fair - 0.5))
        ask_target = bid_target + 1
        t_quote = step_start + int(rng.integers(0, STEP_NS // 4))
        while book.best_ask < ask_target and book.asks:  # price walked up through asks
            change(False, book.best_ask, 0, t_quote)
        while book.best_bid > bid_target and book.bids:
            change(True, book.best_bid, 0, t_quote)
        if book.best_bid < bid_target and rng.random() < 0.7:
            change(True, bid_target, _level_size(rng, lots_per_unit), t_quote)
        if book.best_ask > ask_target and rng.random() < 0.7:
            change(False, ask_target, _level_size(rng, lots_per_unit), t_quote)

        # 2. Trades: Poisson count at the current intensity, clustered inside the step.
        if rng.random() < 0.004:  # slow activity regimes (quiet / busy) on top of the self-excitation
            regime = 2.0 - regime
        lam = base * regime + excitation
        n_trades = int(rng.poisson(lam * 0.1))
        excitation = excitation * decay + jump * n_trades
        if n_trades:
            burst_at = step_start + int(rng.integers(STEP_NS // 4, STEP_NS))
            times = np.sort(burst_at - rng.exponential(3 * NS_PER_MS, n_trades).astype(np.int64))
            times = np.clip(times, step_start + 1, step_start + STEP_NS - 1)
            p_buy = 0.5 + max(-0.4, min(0.4, (fair - (book.best_bid + book.best_ask) / 2) * 0.1))
            for t_ns in times.tolist():
                t_ms = t_ns // NS_PER_MS * NS_PER_MS  # Binance trade times are ms
                buy = bool(rng.random() < p_buy)
                remaining = _trade_size(rng, c, lots_per_unit)
                event_ns = max(t_ms + int(rng.integers(0, 3)) * NS_PER_MS, last_trade_event_ns)
                last_trade_event_ns = event_ns
                while remaining > 0:
                    price = book.best_ask if buy else book.best_bid
                    side = book.asks if buy else book.bids
                    if price not in side:
                        break
                    avail = side[price]
                    qty = min(avail, remaining)
                    # One trade per resting maker order consumed: 1-3 orders at a level, one aggTrade per level.
                    agg_id += 1
                    makers = int(rng.integers(1, 4)) if qty >= 3 else 1
                    cuts = (
                        np.sort(rng.choice(np.arange(1, qty), makers - 1, replace=False))
                        if makers > 1
                        else []
                    )
                    bounds = [0, *[int(x) for x in cuts], qty]
                    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                        trade_id += 1
                        market.trades.append(Trade(trade_id, agg_id, price, b - a, buy, t_ms, event_ns))
                    change(not buy, price, avail - qty, t_ms)
                    remaining -= qty
                    if len(side) < c.levels_per_side // 2:
                        break

        # Keep the depth: refill far levels when a side thins out.
        for is_bid in (True, False):
            side = book.bids if is_bid else book.asks
            while len(side) < c.levels_per_side:
                far = (
                    (min(side) - int(rng.integers(1, 4))) if is_bid else (max(side) + int(rng.integers(1, 4)))
                )
                change(is_bid, far, _level_size(rng, lots_per_unit), step_start + STEP_NS - 1)

        # 3. Limit orders and cancels near the top: a lognormal number of level changes.
        n_quotes = int(round(rng.lognormal(math.log(c.levels_median), c.levels_sigma)))
        for _ in range(n_quotes):
            is_bid = bool(rng.random() < 0.5)
            side = book.bids if is_bid else book.asks
            d = int(rng.geometric(0.02)) - 1
            price = (book.best_bid - d) if is_bid else (book.best_ask + d)
            t_q = step_start + int(rng.integers(0, STEP_NS))
            if price in side and rng.random() < 0.35:
                if (len(side) > c.levels_per_side // 2) or d > 0:
                    change(is_bid, price, 0, t_q)
            else:
                change(is_bid, price, _level_size(rng, lots_per_unit), t_q)
        if changes:
            bids_out = sorted(((p, q) for (b, p), q in changes.items() if b), reverse=True)
            asks_out = sorted((p, q) for (b, p), q in changes.items() if not b)
            event_ns = step_start + STEP_NS + int(rng.integers(0, 3)) * NS_PER_MS
            market.depth.append(DepthMessage(first_uid, update_id, event_ns, bids_out, asks_out))
    yield market
