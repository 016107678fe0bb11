"""The engine under Binance's local-book rules: exact against the simulator's truth at every update id, gaps,
and the real captures' bookTicker."""

from __future__ import annotations

import orjson
import pytest

from rlx_pipeline import venues
from rlx_pipeline.book.binance import LocalBook, compare_book_ticker
from rlx_pipeline.simulator import SimConfig, simulate

S = 10**8


def _snap(last: int, bids, asks) -> dict:
    return {"lastUpdateId": last, "bids": bids, "asks": asks}


def _diff(first: int, final: int, bids=(), asks=(), pu: int | None = None) -> dict:
    msg = {
        "e": "depthUpdate",
        "E": 1,
        "U": first,
        "u": final,
        "b": [list(x) for x in bids],
        "a": [list(x) for x in asks],
    }
    if pu is not None:  # a USD-M diff: with its transaction time too
        msg.update(pu=pu, T=1)
    return msg


def test_book_equals_the_simulated_truth_after_every_depth_message():
    truth = simulate(SimConfig(duration_s=30, seed=11, levels_per_side=200))
    sync = LocalBook(capacity=4096)
    sync.on_snapshot(orjson.loads(truth.initial_snapshot(limit=5000)))
    tick, lot = truth.market.tick, truth.market.lot
    expected = {u: (bids, asks) for u, _, bids, asks in _frozen(truth.iter_books())}
    checked = 0
    for _, stream, data in truth.binance_frames():
        if "@depth" not in stream:
            continue
        for u, _ in sync.on_diff(orjson.loads(data)):
            bids, asks = expected[u]
            assert sync.book.bids() == {p * tick: q * lot for p, q in bids.items()}, u
            assert sync.book.asks() == {p * tick: q * lot for p, q in asks.items()}, u
            checked += 1
    assert checked > 200 and sync.gaps == 0 and checked == sync.applied


def _frozen(books):
    for u, ns, bids, asks in books:  # iter_books yields live dicts: copy them
        yield u, ns, dict(bids), dict(asks)


def test_spot_rules_drop_old_diffs_bridge_and_detect_a_gap():
    sync = LocalBook()
    assert sync.on_diff(_diff(5, 8, bids=[("100", "1")])) == []  # buffered: no snapshot yet
    tops = sync.on_snapshot(_snap(9, [("100", "2")], [("101", "1")]))
    assert tops == [(9, (100 * S, 2 * S, 101 * S, S))] and sync.dropped == 1  # u=8 <= 9: already in it
    assert sync.on_diff(_diff(9, 11, asks=[("100.5", "3")])) == [
        (11, (100 * S, 2 * S, 100 * S + S // 2, 3 * S))
    ]
    assert sync.on_diff(_diff(12, 12, bids=[("100", "0")], asks=[("100.5", "0")])) == [
        (12, (0, 0, 101 * S, S))
    ]
    assert sync.on_diff(_diff(14, 15, bids=[("99", "1")])) == []  # 13 is missing
    assert sync.gaps == 1 and not sync.synced
    # a new snapshot bridges the buffered diff again
    tops = sync.on_snapshot(_snap(14, [("98", "1")], [("101", "1")]))
    assert tops[-1] == (15, (99 * S, S, 101 * S, S)) and sync.synced


def test_futures_rules_use_pu_and_keep_the_diff_ending_at_the_snapshot():
    sync = LocalBook(venues.USDM)
    sync.on_snapshot(_snap(10, [("100", "1")], [("101", "1")]))
    assert sync.on_diff(_diff(3, 9, pu=2)) == [] and sync.dropped == 1
    assert sync.on_diff(_diff(7, 10, bids=[("100", "4")], pu=6))[0][0] == 10  # U <= 10 <= u: the first one
    assert sync.on_diff(_diff(15, 20, asks=[("101", "2")], pu=10)) == [(20, (100 * S, 4 * S, 101 * S, 2 * S))]
    assert sync.on_diff(_diff(25, 30, pu=21)) == [] and sync.gaps == 1


def test_simulated_book_ticker_matches_at_every_shared_update_id():
    truth = simulate(SimConfig(duration_s=20, seed=5))
    frames = [(0, "btcusdt@depthSnapshot", truth.initial_snapshot())] + list(truth.binance_frames())
    res = compare_book_ticker(frames)["btcusdt"]
    assert res["gaps"] == 0 and res["shared"] >= 10 and res["matched"] == res["shared"]


@pytest.mark.realdata
def test_real_captures_best_bid_ask_equal_book_ticker(real_samples):
    from rlx_pipeline.capture.importers import read_cryptofeed, read_hftbacktest

    def eth():
        for p in sorted((real_samples / "hftbacktest").glob("*.gz")):
            yield from read_hftbacktest(p)

    cf = real_samples / "cryptofeed"
    results = {
        **compare_book_ticker(eth()),
        **compare_book_ticker(read_cryptofeed(cf / "BINANCE.ws.1.0", cf / "BINANCE.http.0.0")),
        **compare_book_ticker(
            read_cryptofeed(cf / "BINANCE_FUTURES.ws.1.0", cf / "BINANCE_FUTURES.http.0.0"), venue=venues.USDM
        ),
    }
    assert all(r["gaps"] == 0 and r["matched"] == r["shared"] for r in results.values()), results
    assert results["ethusdt"]["shared"] == 1056  # the samples' README: 1,056 of 1,056
    shared = {s: r["shared"] for s, r in results.items()}
    assert shared == {
        "ethusdt": 1056,
        "blzeth": 1,
        "lrcbtc": 6,
        "nknusdt": 19,
        "runeeur": 0,
        "akrousdt": 7,
        "ctkusdt": 18,
        "keepusdt": 13,
        "sushiusdt": 12,
    }
