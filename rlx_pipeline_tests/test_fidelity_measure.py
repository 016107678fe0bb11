"""Fidelity on hand-built golden and unified tables (the contract schemas), with known injected mismatches: each
one lowers exactly its own component by the expected count (the golden replay itself: test_fidelity_golden_book)."""

from __future__ import annotations

import importlib
import json
import random
from dataclasses import dataclass, field, replace

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_pipeline import schemas, storage
from rlx_pipeline.book.unified import BUILD_KEY
from rlx_pipeline.fidelity import measure, write_report
from rlx_pipeline.fidelity.measure import _id_ranges, compare_side
from rlx_pipeline.orchestration.assets import fidelity as fidelity_assets
from rlx_pipeline_tests.conftest import DATE, PARTITION_KEY, SYMBOL

T0 = 1_723_161_600_000_000_000  # 2024-08-09T00:00:00Z in ns
TOP_N = 10
SNAP_ID = 100
N_MSGS = 20  # depth messages u = 101 .. 120
N_TRADES = 10


@dataclass
class Scenario:
    """One truth, rendered both as golden tables and as a faithful unified stream; tests then spoil one part."""

    snapshot: tuple[dict[int, int], dict[int, int]]
    diffs: list[tuple[int, list[tuple[bool, int, int]]]]  # (u, levels)
    books: dict[int, tuple[dict[int, int], dict[int, int]]] = field(default_factory=dict)  # book after each u
    trades: list[tuple[int, int, int, bool]] = field(default_factory=list)  # (id, price, qty, buyer_is_maker)


def make_scenario(seed: int = 5) -> Scenario:
    rnd = random.Random(seed)
    bids = {10_000 - i: 1 + i for i in range(8)}
    asks = {10_001 + i: 2 + i for i in range(8)}
    sc = Scenario(snapshot=(dict(bids), dict(asks)), diffs=[])
    for u in range(SNAP_ID + 1, SNAP_ID + 1 + N_MSGS):
        levels = []
        for _ in range(rnd.randint(1, 3)):
            is_bid = rnd.random() < 0.5
            side = bids if is_bid else asks
            p = rnd.choice(sorted(side)[:5]) if rnd.random() < 0.8 else (9_990 if is_bid else 10_011)
            q = 0 if (rnd.random() < 0.2 and len(side) > 4) else rnd.randint(1, 50)
            if q:
                side[p] = q
            else:
                side.pop(p, None)
            levels.append((is_bid, p, q))
        sc.diffs.append((u, levels))
        sc.books[u] = (dict(bids), dict(asks))
    sc.trades = [(1000 + i, 10_000 + (i % 2), 1 + i, i % 3 == 0) for i in range(N_TRADES)]
    return sc


def _t(u: int) -> int:
    return T0 + (u - SNAP_ID) * 100_000_000  # a depth message every 100 ms


def write_golden(layout, sc: Scenario, book_ticker: bool = True, early_diff: bool = True) -> None:
    g = lambda t: layout.golden(t, DATE, SYMBOL)  # noqa: E731
    snap_rows = []
    for is_bid, side in ((True, sc.snapshot[0]), (False, sc.snapshot[1])):
        for i, (p, q) in enumerate(sorted(side.items(), reverse=is_bid)):
            snap_rows.append(dict(capture_ns=50, source_file="cap", line_no=5, last_update_id=SNAP_ID,
                                  side_is_bid=is_bid, level=i, price=p, size=q))  # fmt: skip
    storage.write_table(g("snapshots"), pa.Table.from_pylist(snap_rows, schema=schemas.GOLDEN_SNAPSHOTS))
    depth = []
    # a stale diff (u <= lastUpdateId, dropped) and, when early_diff, the first diff received before the snapshot
    # (buffered, then applied once the snapshot arrives: Binance's procedure)
    msgs = [(SNAP_ID, [(True, 10_000, 7)])] + sc.diffs
    for k, (u, levels) in enumerate(msgs):
        cap = 10 + k if (early_diff and k < 2) or k == 0 else 100 + k
        base = dict(capture_ns=cap, source_file="cap", line_no=k + (0 if k < 2 else 10),
                    event_time=_t(u), first_update_id=u, final_update_id=u, prev_final_update_id=None)  # fmt: skip
        for is_bid, p, q in levels:
            depth.append({**base, "side_is_bid": is_bid, "price": p, "size": q})
    storage.write_table(g("depth"), pa.Table.from_pylist(depth, schema=schemas.GOLDEN_DEPTH))
    trades = [
        dict(capture_ns=200 + i, source_file="cap", line_no=500 + i, event_time=T0 + i * 10**8,
             trade_time=T0 + i * 10**8, trade_id=tid, price=p, quantity=q, is_buyer_maker=m)
        for i, (tid, p, q, m) in enumerate(sc.trades)
    ]  # fmt: skip
    storage.write_table(g("trades"), pa.Table.from_pylist(trades, schema=schemas.GOLDEN_TRADES))
    agg = [
        dict(capture_ns=200 + i, source_file="cap", line_no=600 + i, event_time=T0 + i * 10**8,
             trade_time=T0 + i * 10**8, agg_trade_id=500 + i, first_trade_id=tid, last_trade_id=tid,
             price=p, quantity=q, is_buyer_maker=m)
        for i, (tid, p, q, m) in enumerate(sc.trades)
    ]  # fmt: skip
    storage.write_table(g("agg_trades"), pa.Table.from_pylist(agg, schema=schemas.GOLDEN_AGG_TRADES))
    if book_ticker:
        bt = []
        for u, (bids, asks) in sc.books.items():
            bp, ap = max(bids), min(asks)
            bt.append(dict(capture_ns=300 + u, source_file="cap", line_no=700 + u, update_id=u,
                           bid_price=bp, bid_qty=bids[bp], ask_price=ap, ask_qty=asks[ap]))  # fmt: skip
        bt.append(dict(capture_ns=999, source_file="cap", line_no=999, update_id=10**9,
                       bid_price=1, bid_qty=1, ask_price=2, ask_qty=1))  # an id with no depth message: ignored  # fmt: skip
        storage.write_table(g("book_ticker"), pa.Table.from_pylist(bt, schema=schemas.GOLDEN_BOOK_TICKER))


def unified_rows(
    sc: Scenario,
    bid_bound: int | None = 0,
    ask_bound: int | None = 10**12,
    invalid: frozenset[int] = frozenset(),
) -> list[dict]:
    """A faithful reconstruction: one delta row per message with the book after it, one row per trade (no
    book). ``write_unified`` splits the rows into events.parquet and the delta rows' states, book.parquet.
    States at the update ids ``invalid`` are marked ``book_valid`` false."""
    rows = []
    empty = {f"{s}_{i}_{w}": None for s in ("bid", "ask") for i in range(TOP_N) for w in ("price", "size")}
    for u, (bids, asks) in sc.books.items():
        row = dict(empty, origin_time=_t(u), received_time=_t(u) + 5_000_000, event_type=1, sequence_number=u,
                   is_last_in_message=True, side_is_bid=None, price=None, size=None, trade_id=None,
                   bid_known_min_price=bid_bound, ask_known_max_price=ask_bound,
                   book_valid=u not in invalid)  # fmt: skip
        for i, (p, q) in enumerate(sorted(bids.items(), reverse=True)[:TOP_N]):
            row[f"bid_{i}_price"], row[f"bid_{i}_size"] = p, q
        for i, (p, q) in enumerate(sorted(asks.items())[:TOP_N]):
            row[f"ask_{i}_price"], row[f"ask_{i}_size"] = p, q
        rows.append(row)
    for i, (tid, p, q, m) in enumerate(sc.trades):
        rows.append(dict(origin_time=T0 + i * 10**8, received_time=200 + i, event_type=2,
                         sequence_number=SNAP_ID, is_last_in_message=True, side_is_bid=not m, price=p, size=q,
                         trade_id=tid))  # fmt: skip
    return sorted(rows, key=lambda r: (r["origin_time"], r["event_type"]))


def write_unified(layout, rows: list[dict]) -> None:
    """The rows as the two files of a unified day: every row an event, every row with a book a book state."""
    events, book = schemas.unified_events_schema(), schemas.unified_book_schema(TOP_N)
    states = [dict(r, event_index=i) for i, r in enumerate(rows) if "bid_known_min_price" in r]
    ev_table = pa.Table.from_pylist([{k: r[k] for k in events.names} for r in rows], schema=events)
    book_table = pa.Table.from_pylist([{k: r[k] for k in book.names} for r in states], schema=book)
    storage.write_table(layout.unified(DATE, SYMBOL), ev_table)
    storage.write_table(layout.unified_book(DATE, SYMBOL), book_table)


def comps(f) -> dict[str, tuple[int, int]]:
    return {k: (r.matched, r.total) for k, r in f.components().items()}


CLEAN = {
    "trades_golden_in_recon": (N_TRADES, N_TRADES),
    "trades_recon_in_golden": (N_TRADES, N_TRADES),
    "book_top1": (N_MSGS, N_MSGS),
    "book_top5": (N_MSGS, N_MSGS),
    "book_topN": (N_MSGS, N_MSGS),
    "book_ticker": (N_MSGS, N_MSGS),
    "coverage_update_ids": (N_MSGS, N_MSGS),
}


@pytest.fixture
def sc() -> Scenario:
    return make_scenario()


def test_a_faithful_reconstruction_scores_exactly_one(layout, sc):
    write_golden(layout, sc)
    write_unified(layout, unified_rows(sc))
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert f.measurable and f.score == 1.0
    assert comps(f) == CLEAN
    assert f.trade_id_kind == "trade ids"
    assert f.golden_self_book_ticker.matched == f.golden_self_book_ticker.total == N_MSGS
    assert f.unknowable_levels == 0 and f.topn_raw.value == 1.0
    assert (f.golden_ids_missing, f.recon_ids_not_in_golden) == (0, 0)
    # the stale diff was dropped; the diff received before the snapshot was buffered and applied after it
    assert f.replay["dropped_before_snapshot"] == 1 and f.replay["applied"] == N_MSGS
    assert f.timing_ms["origin_minus_golden_trade_time"]["nonzero"] == 0
    assert f.timing_ms["lake_receive_minus_depth_capture"]["n"] == N_MSGS
    assert [m for m in f.mismatches] == []


def test_a_missing_trade_lowers_only_golden_in_recon_by_one(layout, sc):
    write_golden(layout, sc)
    write_unified(layout, [r for r in unified_rows(sc) if r["trade_id"] != 1004])
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert comps(f) == {
        **CLEAN,
        "trades_golden_in_recon": (N_TRADES - 1, N_TRADES),
        "trades_recon_in_golden": (N_TRADES - 1, N_TRADES - 1),
    }
    assert f.score == (N_TRADES - 1) / N_TRADES
    assert [(m["component"], m["trade_id"]) for m in f.mismatches] == [("trade_missing", 1004)]


def test_a_wrong_side_and_an_extra_trade(layout, sc):
    rows = unified_rows(sc)
    for r in rows:
        if r["trade_id"] == 1003:
            r["side_is_bid"] = not r["side_is_bid"]
    extra = dict(next(r for r in rows if r["trade_id"] == 1001), trade_id=4242)
    write_golden(layout, sc)
    write_unified(layout, sorted(rows + [extra], key=lambda r: (r["origin_time"], r["event_type"])))
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert comps(f) == {
        **CLEAN,
        "trades_golden_in_recon": (N_TRADES - 1, N_TRADES),
        "trades_recon_in_golden": (N_TRADES, N_TRADES + 1),  # the wrong side is still a trade Binance sent
    }
    kinds = {m["component"]: m for m in f.mismatches}
    assert kinds["trade"]["trade_id"] == 1003 and kinds["trade"]["golden"][2] != kinds["trade"]["recon"][2]
    assert kinds["trade_extra"]["trade_id"] == 4242


def test_a_golden_trade_captured_twice_counts_its_reconstructed_trade_once(layout, sc):
    sc.trades = sc.trades + [sc.trades[3]]  # the same trade id twice in the golden table
    write_golden(layout, sc)
    write_unified(layout, unified_rows(replace(sc, trades=sc.trades[:-1])))
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert comps(f)["trades_recon_in_golden"] == (N_TRADES, N_TRADES)
    assert comps(f)["trades_golden_in_recon"] == (N_TRADES + 1, N_TRADES + 1)


def test_a_wrong_third_level_lowers_top5_and_topN_but_not_top1(layout, sc):
    rows = unified_rows(sc)
    bad = next(r for r in rows if r["sequence_number"] == 110 and r["event_type"] == 1)
    bad["bid_2_size"] += 1
    write_golden(layout, sc)
    write_unified(layout, rows)
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert comps(f) == {**CLEAN, "book_top5": (N_MSGS - 1, N_MSGS), "book_topN": (N_MSGS - 1, N_MSGS)}
    assert [(m["component"], m["u"]) for m in f.mismatches] == [("book", 110)]
    assert sum(t["topN_mismatched"] for t in f.timeline) == 1


def test_a_wrong_state_inside_an_invalid_interval_is_flagged_not_wrong_and_outside_it_is_an_error(layout, sc):
    write_golden(layout, sc)
    rows = unified_rows(sc, invalid=frozenset({110, 111}))
    next(r for r in rows if r["sequence_number"] == 110 and r["event_type"] == 1)["bid_2_size"] += 1
    write_unified(layout, rows)
    f = measure(layout, DATE, SYMBOL, TOP_N)
    # the gated figures cover the valid states only, all exact; the flagged ones are counted apart
    assert comps(f) == {
        **CLEAN,
        "book_top1": (N_MSGS - 2, N_MSGS - 2),
        "book_top5": (N_MSGS - 2, N_MSGS - 2),
        "book_topN": (N_MSGS - 2, N_MSGS - 2),
        "book_ticker": (N_MSGS - 2, N_MSGS - 2),
    }
    assert f.score == 1.0 and (f.flagged.matched, f.flagged.total) == (1, 2) and not f.mismatches
    assert sum(t["flagged"] for t in f.timeline) == 2
    # the same wrong state marked valid is an error
    rows = unified_rows(sc, invalid=frozenset({111}))
    next(r for r in rows if r["sequence_number"] == 110 and r["event_type"] == 1)["bid_2_size"] += 1
    write_unified(layout, rows)
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert comps(f)["book_topN"] == (N_MSGS - 2, N_MSGS - 1) and f.score < 1.0
    assert [(m["component"], m["u"]) for m in f.mismatches] == [("book", 110)]


def test_a_stale_top_lowers_top1_and_book_ticker(layout, sc):
    rows = unified_rows(sc)
    # at some u whose message changed the best ask, the reconstruction still shows the book of u - 1
    u = next(
        u
        for u in range(SNAP_ID + 2, SNAP_ID + N_MSGS)
        if min(sc.books[u][1].items()) != min(sc.books[u - 1][1].items())
    )
    prev = next(r for r in rows if r["sequence_number"] == u - 1 and r["event_type"] == 1)
    i = next(k for k, r in enumerate(rows) if r["sequence_number"] == u and r["event_type"] == 1)
    rows[i] = dict(prev, sequence_number=u, origin_time=rows[i]["origin_time"])
    write_golden(layout, sc)
    write_unified(layout, rows)
    f = measure(layout, DATE, SYMBOL, TOP_N)
    c = comps(f)
    assert c["book_top1"] == (N_MSGS - 1, N_MSGS) and c["book_ticker"] == (N_MSGS - 1, N_MSGS)
    assert c["book_top5"] == c["book_topN"] == (N_MSGS - 1, N_MSGS)
    assert c["trades_golden_in_recon"] == (N_TRADES, N_TRADES)
    assert {m["component"] for m in f.mismatches} == {"book", "book_ticker"}
    assert f.golden_self_book_ticker.value == 1.0  # the reference itself stays consistent


def test_levels_beyond_the_known_range_are_unknowable_not_wrong(layout, sc):
    deep = 9_000  # a golden bid far below anything the lake data saw
    sc.snapshot[0][deep] = 3
    for bids, _ in sc.books.values():
        bids[deep] = 3
    write_golden(layout, sc)
    faithful = [dict(r) for r in unified_rows(sc)]
    for r in faithful:  # the reconstruction lacks the deep level, and says so with its known bound
        if r["event_type"] == 1:
            for i in range(TOP_N):
                if r[f"bid_{i}_price"] == deep:
                    r[f"bid_{i}_price"] = r[f"bid_{i}_size"] = None
            r["bid_known_min_price"] = 9_500
    write_unified(layout, faithful)
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert comps(f) == CLEAN
    assert f.unknowable_levels == N_MSGS and f.topn_raw.matched == 0
    # the same gap inside the range the reconstruction claims to know completely is wrong
    for r in faithful:
        if r["event_type"] == 1:
            r["bid_known_min_price"] = 8_000
    write_unified(layout, faithful)
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert comps(f) == {**CLEAN, "book_topN": (0, N_MSGS)}
    assert f.unknowable_levels == 0


def test_a_dropped_message_is_a_coverage_gap_with_its_time_range(layout, sc):
    write_golden(layout, sc)
    write_unified(
        layout,
        [r for r in unified_rows(sc) if not (r["event_type"] == 1 and r["sequence_number"] in (113, 114))],
    )
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert comps(f) == {
        **{k: (v[0] - 2, v[1] - 2) if k.startswith("book") else v for k, v in CLEAN.items()},
        "coverage_update_ids": (N_MSGS - 2, N_MSGS),
    }
    assert f.score == (N_MSGS - 2) / N_MSGS
    assert (f.golden_ids_missing, f.recon_ids_not_in_golden) == (2, 0)
    assert f.missing_ranges == [
        {"first_u": 113, "last_u": 114, "count": 2, "from_ns": _t(113), "to_ns": _t(114),
         "from": "2024-08-09T00:00:01.300000000Z", "to": "2024-08-09T00:00:01.400000000Z"}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("cut", "missing"),
    [("start", list(range(101, 106))), ("end", list(range(116, 121))), ("both", [101, 102, 119, 120])],
)
def test_a_lake_cut_short_at_either_end_is_not_full_fidelity(layout, sc, cut, missing):
    """The book comparison only sees states both sides have: the coverage component counts the golden ids the
    reconstruction lacks at the start and the end of the golden window too, and lowers the score."""
    write_golden(layout, sc)
    write_unified(
        layout,
        [r for r in unified_rows(sc) if not (r["event_type"] == 1 and r["sequence_number"] in missing)],
    )
    f = measure(layout, DATE, SYMBOL, TOP_N)
    k = len(missing)
    assert comps(f)["coverage_update_ids"] == (N_MSGS - k, N_MSGS)
    assert comps(f)["book_topN"] == (N_MSGS - k, N_MSGS - k)  # what was compared is exact
    assert f.score == (N_MSGS - k) / N_MSGS
    assert f.golden_ids_missing == k
    assert sum(r["count"] for r in f.missing_ranges) == k


def test_a_phantom_level_below_a_thin_golden_book_is_wrong(layout, sc):
    """Golden has 8 levels a side (fewer than N=10): a reconstructed 9th level Binance never had is wrong."""
    rows = unified_rows(sc)
    phantom = next(r for r in rows if r["event_type"] == 1 and r["sequence_number"] == 110)
    n_bids = sum(phantom[f"bid_{i}_price"] is not None for i in range(TOP_N))
    assert n_bids < TOP_N
    phantom[f"bid_{n_bids}_price"] = phantom[f"bid_{n_bids - 1}_price"] - 50
    phantom[f"bid_{n_bids}_size"] = 3
    write_golden(layout, sc)
    write_unified(layout, rows)
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert comps(f)["book_topN"] == (N_MSGS - 1, N_MSGS)
    assert comps(f)["book_top5"] == (N_MSGS, N_MSGS)  # below the top 5: only top-N sees it
    assert [m["u"] for m in f.mismatches if m["component"] == "book"] == [110]


def test_compare_side_phantom_levels():
    golden = [(100, 1), (99, 2)]
    assert compare_side(golden, [(100, 1), (99, 2)], None, True, 10) == (True, 0)
    assert compare_side(golden, [(100, 1), (99, 2), (98, 5)], None, True, 10) == (False, 0)
    # the golden side is not thin: a deeper reconstructed level is outside the compared depth
    assert compare_side(golden, [(100, 1), (99, 2), (98, 5)], None, True, 2) == (True, 0)
    asks = [(101, 1)]
    assert compare_side(asks, [(101, 1), (103, 1)], None, False, 5) == (False, 0)


def test_a_book_after_every_row_is_compared_at_each_message_end(layout, sc):
    # book_every="row": a state after every event; only a message's last delta state is its book
    rows = []
    for r in unified_rows(sc):
        if r["event_type"] == 1:  # a first row of the message, with the (wrong) book in between
            rows.append(dict(r, is_last_in_message=False, bid_0_size=r["bid_0_size"] + 1))
        elif rows:  # a trade: the state in force, at the last applied update id
            r = {**rows[-1], **r}
        rows.append(r)
    write_golden(layout, sc)
    write_unified(layout, rows)
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert comps(f) == CLEAN and f.mismatches == []
    assert (f.recon_update_ids, f.golden_ids_missing, f.recon_ids_not_in_golden) == (N_MSGS, 0, 0)


@pytest.mark.parametrize("missing", ["events", "book"])
def test_either_file_missing_is_no_unified_stream(layout, sc, missing):
    write_golden(layout, sc)
    write_unified(layout, unified_rows(sc))
    gone = layout.unified(DATE, SYMBOL) if missing == "events" else layout.unified_book(DATE, SYMBOL)
    gone.unlink()
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert not f.measurable and f.score is None and f.reason == f"no unified stream at {gone}"


def test_files_of_different_builds_are_refused(layout, sc):
    write_golden(layout, sc)
    write_unified(layout, unified_rows(sc))
    book = layout.unified_book(DATE, SYMBOL)
    t = pq.read_table(book)
    storage.write_table(book, t.replace_schema_metadata({**t.schema.metadata, BUILD_KEY: b"another build"}))
    with pytest.raises(ValueError, match="different builds"):
        measure(layout, DATE, SYMBOL, TOP_N)


def test_lake_ids_that_are_agg_trade_ids_are_detected_and_matched(layout, sc):
    rows = unified_rows(sc)
    for r in rows:
        if r["event_type"] == 2:
            r["trade_id"] = r["trade_id"] - 1000 + 500
    write_golden(layout, sc)
    write_unified(layout, rows)
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert f.trade_id_kind == "aggTrade ids"
    assert comps(f) == CLEAN


def test_no_golden_samples_is_not_measurable(layout, sc):
    write_unified(layout, unified_rows(sc))
    f = measure(layout, DATE, SYMBOL, TOP_N)
    assert not f.measurable and f.score is None and "no golden samples" in f.reason
    paths = write_report(layout, f, 0.999)
    body = json.loads(paths["json"].read_text())
    assert body["measurable"] is False and body["passed"] is None
    assert "NOT MEASURABLE" in paths["md"].read_text()


def test_report_files_and_plots(layout, sc):
    write_golden(layout, sc)
    write_unified(layout, unified_rows(sc))
    paths = write_report(layout, measure(layout, DATE, SYMBOL, TOP_N), 0.999)
    assert set(paths) == {"json", "md", "timeline", "timing", "spread"}
    for k in ("timeline", "timing", "spread"):
        assert paths[k].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    body = json.loads(paths["json"].read_text())
    assert body["passed"] is True and body["score"] == 1.0
    assert "| book_topN | 20 | 20 | 100.0000% |" in paths["md"].read_text()


# --- ids compared range by range: a range edge changes nothing ------------------------------------------------


def _report(layout, chunk: int) -> tuple[dict, dict]:
    f = measure(layout, DATE, SYMBOL, TOP_N, chunk=chunk)
    # timing samples feed percentiles and histograms: their order is free
    return f.to_dict(), {k: v.values_ms().tolist() for k, v in f.timing_samples.items()}


def test_range_edges_change_nothing_and_runs_come_out_whole(layout, sc, monkeypatch):
    """Update ids, trade ids and book states read in ranges of 1, 2, 3 and 7 ids give the report of one range:
    a run of missing update ids spanning ranges is one run, ids missing on both sides of an edge are counted once,
    the longest runs are listed (ties: the first), a trade id gap at an edge is found, an id only the
    reconstruction has is listed, a wrong book in a later range is the one mismatch."""
    # the package exports the function measure(): the module from the import system
    monkeypatch.setattr(importlib.import_module("rlx_pipeline.fidelity.measure"), "MAX_LISTED", 3)
    gone_u = {102, 104, 105, 106, 107, 108, 110, 112, 113}  # runs of 1, 5, 1, 2 update ids
    gone_trades = {1004, 1005}
    rows = [
        r
        for r in unified_rows(sc)
        if not (r["event_type"] == 1 and r["sequence_number"] in gone_u) and r["trade_id"] not in gone_trades
    ]
    next(r for r in rows if r["event_type"] == 1 and r["sequence_number"] == 111)["bid_2_size"] += 1
    sc.diffs = [d for d in sc.diffs if d[0] != 115]  # Binance's 115 never captured: only the lake has it
    write_golden(layout, sc)
    write_unified(layout, rows)
    whole = _report(layout, 10**6)
    body = whole[0]
    runs = [(r["first_u"], r["last_u"], r["count"]) for r in body["missing_in_recon_ranges"]]
    assert runs == [
        (102, 102, 1),
        (104, 108, 5),
        (112, 113, 2),
    ]  # the 3 longest; 110 ties 102 and comes later
    assert body["missing_in_recon_ranges"][1]["from_ns"] == _t(104)
    assert body["missing_in_recon_ranges"][1]["to_ns"] == _t(108)
    assert body["golden_update_ids_missing_in_recon"] == len(gone_u)
    assert [(r["first_u"], r["count"]) for r in body["not_in_golden_ranges"]] == [(115, 1)]
    assert body["components"]["trades_golden_in_recon"]["matched"] == N_TRADES - 2
    assert [(m["component"], m.get("trade_id", m.get("u"))) for m in body["first_mismatches"]] == [
        ("trade_missing", 1004),
        ("trade_missing", 1005),
        ("book", 111),
    ]
    for chunk in (1, 2, 3, 7):
        assert _report(layout, chunk) == whole, chunk


def test_id_ranges_cover_every_id_once_and_skip_between_sides():
    # width: chunk ids at each side's own density (10 ids over 10, 5 over 50); sides apart are walked apart
    assert list(_id_ranges([(0, 9, 10), None, (100, 149, 5)], 4)) == [
        (0, 3, True),
        (4, 7, False),
        (8, 9, False),
        (100, 139, False),
        (140, 149, False),
    ]
    # overlapping sides: one walk at the densest side's width
    assert list(_id_ranges([(0, 99, 10), (50, 59, 10)], 2)) == [
        (a, min(a + 1, 99), a == 0) for a in range(0, 100, 2)
    ]
    assert list(_id_ranges([None], 5)) == []


# --- through Dagster: the blocking check -----------------------------------------------------------------------


def _check(rlx) -> dg.AssetCheckEvaluation:
    result = dg.materialize(
        fidelity_assets.assets + fidelity_assets.checks,
        partition_key=PARTITION_KEY,
        resources={"rlx": rlx},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    (ev,) = result.get_asset_check_evaluations()
    return ev


def test_check_fails_below_threshold_and_passes_at_full_fidelity(layout, rlx, sc):
    write_golden(layout, sc)
    write_unified(layout, unified_rows(sc))
    ev = _check(rlx)
    assert ev.passed and ev.metadata["score"].value == 1.0 and ev.metadata["checked"].value is True
    rows = unified_rows(sc)
    next(r for r in rows if r["event_type"] == 1)["bid_0_size"] += 1  # one wrong top in 20: 95% < 99.9%
    write_unified(layout, rows)
    ev = _check(rlx)
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert ev.metadata["book_top1"].value == pytest.approx(19 / 20)
    assert ev.metadata["book_top1_count"].value == "19/20"


def test_check_without_golden_samples_says_not_checked(layout, rlx, sc):
    write_unified(layout, unified_rows(sc))
    ev = _check(rlx)
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.WARN
    assert ev.metadata["checked"].value is False
    assert ev.description.startswith("not checked: no golden samples")
