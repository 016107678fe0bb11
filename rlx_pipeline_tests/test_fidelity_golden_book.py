"""The golden book replay (numba kernel over the depth table's columns) against the straightforward replay it
replaced (``golden_replay_reference``: one Python object per message and level, a dict of sizes per side): the same
states, stats and invalid spans on crafted edge cases of both venues, random sequences, a faulty simulated day and
the real captures, whatever the batch size."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pytest

from rlx_pipeline import schemas, storage, venues
from rlx_pipeline.fidelity.golden_book import (
    BUFFER_MAX,
    FINAL,
    FIRST,
    HAS_PU,
    HI,
    LO,
    PU,
    GoldenBook,
    iter_depth_batches,
)
from rlx_pipeline_tests import golden_replay_reference as reference

BATCHES = [1, 7, 4093, 65536]

# an arrival: ("snap", lastUpdateId, levels) or ("diff", U, u, pu, levels); a level (is_bid, price, size)


def write_day(tmp_path: Path, arrivals: list[tuple]) -> tuple[Path, Path]:
    """The arrivals as golden ``snapshots`` and ``depth`` tables, received in list order (capture ns = position;
    a diff's event time = 1000 x its position)."""
    snaps, depth = [], []
    for k, a in enumerate(arrivals):
        if a[0] == "snap":
            for is_bid, p, q in a[2]:
                snaps.append(dict(capture_ns=k, source_file="cap", line_no=k, last_update_id=a[1],
                                  side_is_bid=is_bid, level=0, price=p, size=q))  # fmt: skip
            continue
        _, first, u, pu, levels = a
        base = dict(capture_ns=k, source_file="cap", line_no=k, event_time=1000 * k, first_update_id=first,
                    final_update_id=u, prev_final_update_id=pu)  # fmt: skip
        for is_bid, p, q in levels or [(None, None, None)]:  # a diff without levels: one row of nulls
            depth.append({**base, "side_is_bid": is_bid, "price": p, "size": q})
    sp, dp = tmp_path / "snapshots.parquet", tmp_path / "depth.parquet"
    storage.write_table(sp, pa.Table.from_pylist(snaps, schema=schemas.GOLDEN_SNAPSHOTS))
    storage.write_table(dp, pa.Table.from_pylist(depth, schema=schemas.GOLDEN_DEPTH))
    return sp, dp


def replayed(
    snapshots: Path, depth: Path, rules: venues.DepthRules, batch_rows: int, top_n: int = 3
) -> tuple:
    """(states as tuples, stats, invalid spans) of the kernel, checked equal to the reference's."""
    book = GoldenBook(snapshots, depth, top_n, rules, batch_rows=batch_rows)
    got = [(s.u, s.event_ns, s.capture_ns, s.bids, s.asks) for s in book.states()]
    ref = reference.GoldenBook(snapshots, depth, top_n, rules)
    want = [(s.u, s.event_ns, s.capture_ns, s.bids, s.asks) for s in ref.states()]
    assert got == want
    assert book.stats.to_dict() == ref.replay.stats.to_dict()
    assert book.invalid_spans == ref.replay.invalid_spans
    return got, book.stats.to_dict(), book.invalid_spans


def _diff(first: int, u: int, levels=(), pu: int | None = None) -> tuple:
    return ("diff", first, u, pu, list(levels))


@pytest.mark.parametrize("batch_rows", BATCHES)
def test_a_gap_invalidates_until_a_snapshot_bridges_again(tmp_path, batch_rows):
    day = [
        _diff(8, 9),  # before any snapshot: buffered, then dropped (u <= 10)
        ("snap", 10, [(True, 100, 1), (False, 101, 1), (True, 97, 0)]),  # a zero-size level: not in the book
        _diff(11, 12, [(True, 99, 2)]),  # bridges 11 <= 11 <= 12
        _diff(13, 13, [(True, 100, 0), (False, 103, 4)]),  # the best bid removed, an ask added
        _diff(15, 15, [(True, 50, 1)]),  # 14 lost: a gap, invalid from here (buffered)
        _diff(16, 16, [(True, 98, 7)]),
        ("snap", 15, [(True, 98, 4), (False, 101, 1)]),  # the buffered 15 dropped, 16 bridges
        _diff(17, 17, [(False, 102, 5), (False, 101, 0)]),
        _diff(18, 18, [(False, 101, 3)]),  # the removed level added again
        ("snap", 16, [(True, 1, 1), (False, 2, 2)]),  # valid and already past it: ignored
        _diff(18, 18),  # a duplicate (overlapping connections): stale, dropped
        _diff(19, 19, [(True, 98, 0), (True, 98, 0)]),  # a level removed twice in one message
    ]
    states, stats, spans = replayed(*write_day(tmp_path, day), venues.SPOT_RULES, batch_rows)
    assert states == [
        (12, 2000, 2, [(100, 1), (99, 2)], [(101, 1)]),
        (13, 3000, 3, [(99, 2)], [(101, 1), (103, 4)]),
        (16, 5000, 5, [(98, 7)], [(101, 1)]),
        (17, 7000, 7, [(98, 7)], [(102, 5)]),
        (18, 8000, 8, [(98, 7)], [(101, 3), (102, 5)]),
        (19, 11000, 11, [], [(101, 3), (102, 5)]),
    ]
    assert stats == dict(messages=9, applied=6, dropped_before_snapshot=2, snapshots=3, snapshots_ignored=1,
                         unbridged=0, gaps=1, stale=1, buffered=3, invalid_messages=0, buffer_overflow=0)  # fmt: skip
    assert spans == [{"start_ns": 4000, "after_update_id": 13, "end_ns": 5000, "resumed_at": 16}]


@pytest.mark.parametrize("batch_rows", BATCHES)
def test_an_unbridged_snapshot_yields_nothing_until_the_next_one(tmp_path, batch_rows):
    day = [
        ("snap", 10, [(True, 100, 1), (False, 101, 1)]),
        _diff(13, 14, [(True, 99, 1)]),  # 11 and 12 never seen: the snapshot is too old (buffered)
        _diff(15, 15, [(True, 98, 1)]),  # no book: buffered
        _diff(16, 16, [(True, 97, 1)]),
        ("snap", 14, [(True, 100, 2), (False, 101, 2)]),  # 14 dropped, 15 bridges, 16 follows
        ("snap", 20, [(True, 90, 1), (False, 91, 1)]),  # ahead of the book: taken
        _diff(23, 23),  # 21 and 22 never seen: unbridged (buffered)
        _diff(24, 24),  # no book: buffered
        (
            "snap",
            21,
            [(True, 90, 2), (False, 91, 2)],
        ),  # 23 does not bridge it either; 24 replayed without a book
        _diff(25, 25),
    ]
    states, stats, spans = replayed(*write_day(tmp_path, day), venues.SPOT_RULES, batch_rows)
    assert [s[0] for s in states] == [15, 16]
    assert states[-1][3:] == ([(100, 2), (98, 1), (97, 1)], [(101, 2)])
    assert (stats["unbridged"], stats["dropped_before_snapshot"], stats["invalid_messages"]) == (3, 1, 1)
    assert stats["buffered"] == 7 and spans == []


@pytest.mark.parametrize("batch_rows", BATCHES)
def test_usdm_bridges_at_last_update_id_and_follows_the_pu_chain(tmp_path, batch_rows):
    # real USD-M captures (cryptofeed AKRO/KEEP/CTK): the first diff after the snapshot has u == lastUpdateId
    day = [
        ("snap", 605486, [(True, 100, 1), (False, 101, 1)]),
        _diff(600000, 605486, [(True, 100, 3)], pu=599831),
        _diff(609657, 609902, [(False, 101, 0), (False, 103, 2)], pu=605486),
        _diff(611301, 611654, [], pu=609000),  # pu != previous u: lost events
        _diff(611655, 611700, [(True, 100, 0)], pu=None),  # no pu: no chain (and no book anyway)
        ("snap", 611654, [(True, 99, 1), (False, 104, 1)]),  # 611654 (u == last) bridges, then no pu: a gap
        _diff(611701, 611800, [(True, 98, 1)], pu=611700),
    ]
    states, stats, spans = replayed(*write_day(tmp_path, day), venues.USDM_RULES, batch_rows)
    assert [s[0] for s in states] == [605486, 609902, 611654]
    assert states[1][3:] == ([(100, 3)], [(103, 2)])
    assert (stats["unbridged"], stats["gaps"]) == (0, 2)
    assert spans == [
        {"start_ns": 3000, "after_update_id": 609902, "end_ns": 3000, "resumed_at": 611654},
        {"start_ns": 4000, "after_update_id": 611654, "end_ns": None, "resumed_at": None},
    ]


@pytest.mark.parametrize("batch_rows", [4093, 65536])
def test_the_buffer_keeps_the_last_diffs_while_no_snapshot_comes(tmp_path, batch_rows):
    over = 5
    day = [_diff(u, u, [(u % 2 == 0, 100 + u % 7, u % 3)]) for u in range(1, BUFFER_MAX + over + 1)]
    last = BUFFER_MAX + over - 3  # the snapshot bridges a diff still in the buffer: the last three follow it
    day.append(("snap", last, [(True, 90, 1), (False, 200, 1)]))
    states, stats, _ = replayed(*write_day(tmp_path, day), venues.SPOT_RULES, batch_rows)
    assert [s[0] for s in states] == [last + 1, last + 2, last + 3]
    assert (stats["buffer_overflow"], stats["buffered"]) == (over, BUFFER_MAX + over)
    assert stats["dropped_before_snapshot"] == BUFFER_MAX - 3


def _random_day(rnd: random.Random, usdm: bool) -> list[tuple]:
    """Diffs with random losses, duplicates and reorderings, snapshots now and then (some stale, some ahead),
    levels added, changed, removed and re-added on a few prices of each side."""
    day, u, pu = [], 100, 99
    for _ in range(rnd.randint(20, 120)):
        r = rnd.random()
        if r < 0.08:
            last = u + rnd.randint(-6, 3)
            levels = [
                (b, p, rnd.choice([0, 1, 2, 5])) for b in (True, False) for p in rnd.sample(range(10), 4)
            ]
            day.append(("snap", last, [(b, (p if b else p + 10), q) for b, p, q in levels]))
            continue
        n = rnd.randint(1, 4)
        first = u + 1 if rnd.random() > 0.1 else u + rnd.randint(-2, 3)  # a loss or an overlap now and then
        last = first + n - 1
        levels = [(b, (p if b else p + 10), rnd.choice([0, 0, 1, 3, 7])) for b, p in
                  ((rnd.random() < 0.5, rnd.randrange(10)) for _ in range(rnd.randint(0, 5)))]  # fmt: skip
        prev = pu if rnd.random() > 0.1 else rnd.choice([None, pu - 1])
        day.append(_diff(first, last, levels, pu=prev if usdm else None))
        if rnd.random() < 0.1 and len(day) > 2:
            day[-1], day[-2] = day[-2], day[-1]
        u, pu = max(u, last), last
    return day


@pytest.mark.parametrize("usdm", [False, True])
def test_random_days_replay_like_the_reference(tmp_path, usdm):
    rnd = random.Random(11 + usdm)
    rules = venues.USDM_RULES if usdm else venues.SPOT_RULES
    seen = {"applied": 0, "gaps": 0, "unbridged": 0, "stale": 0, "invalid_messages": 0}
    for k in range(40):
        day = _random_day(rnd, usdm)
        paths = write_day(tmp_path / str(k), day)
        for batch_rows in (1, 3, 1000):
            _, stats, _ = replayed(*paths, rules, batch_rows)
        for key in seen:
            seen[key] += stats[key]
    assert all(seen.values()), seen  # every case met somewhere


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 100])
def test_depth_rows_regroup_into_messages_whatever_the_batch(tmp_path, batch_rows):
    # a message is a run of rows with the same (file, line, u): the same line and u in another file is another
    # message; a message with no levels is one row of nulls
    def row(src, line, u, level):
        b, p, q = level or (None, None, None)
        return dict(capture_ns=line * 10, source_file=src, line_no=line, event_time=line * 100,
                    first_update_id=u, final_update_id=u, prev_final_update_id=u - 1 if src == "b" else None,
                    side_is_bid=b, price=p, size=q)  # fmt: skip

    rows = [row("a", 1, 10, (True, 5, 1)), row("a", 1, 10, (False, 6, 2)), row("a", 2, 11, None),
            row("b", 2, 11, (True, 5, 0)), row("b", 2, 12, (False, 7, 3))]  # fmt: skip
    path = tmp_path / "depth.parquet"
    storage.write_table(path, pa.Table.from_pylist(rows, schema=schemas.GOLDEN_DEPTH))
    got = []
    for msg, lv in iter_depth_batches(path, batch_rows=batch_rows):
        for m in msg.tolist():
            levels = [tuple(x) for x in lv[m[LO] : m[HI]].tolist()]
            got.append((*m[:FIRST], m[FIRST], m[FINAL], m[PU] if m[HAS_PU] else None, levels))
    assert got == [
        (10, 100, 10, 10, None, [(1, 5, 1), (0, 6, 2)]),
        (20, 200, 11, 11, None, [(-1, 0, 0)]),  # side -1: no level
        (20, 200, 11, 11, 10, [(1, 5, 0)]),
        (20, 200, 12, 12, 11, [(0, 7, 3)]),
    ]
    # and the same messages as the reference's regrouping
    assert [(m.capture_ns, m.event_ns, m.first_id, m.final_id, m.prev_final_id) for m in
            reference.iter_depth_messages(path, batch_rows=batch_rows)] == [g[:5] for g in got]  # fmt: skip


# --- whole days: a faulty simulated one, the real captures -------------------------------------------------------


def _golden(tmp_path: Path, captures: list[Path], symbol: str, date: str) -> tuple[Path, Path]:
    from rlx_pipeline.golden import build_golden

    build_golden(captures, symbol, date, lambda t: tmp_path / "golden" / f"{t}.parquet")
    return tmp_path / "golden" / "snapshots.parquet", tmp_path / "golden" / "depth.parquet"


def test_a_faulty_simulated_day_replays_like_the_reference(tmp_path):
    from rlx_pipeline.formats.capture_file import write_capture
    from rlx_pipeline.simulator import SimConfig, faults, simulate
    from rlx_pipeline_tests.conftest import DATE, SYMBOL

    truth = simulate(SimConfig(symbol=SYMBOL, start=f"{DATE}T00:00:00Z", duration_s=90, seed=21))
    lines, _ = faults.drop_depth_frames(list(truth.capture_lines()), 2, seed=3)
    write_capture(tmp_path / "sim.jsonl.zst", lines)
    paths = _golden(tmp_path, [tmp_path / "sim.jsonl.zst"], SYMBOL, DATE)
    for batch_rows in BATCHES:
        states, stats, spans = replayed(*paths, venues.SPOT_RULES, batch_rows, top_n=10)
    # one snapshot a session: after the first loss there is no book for the rest of the day (everything buffered)
    assert (stats["gaps"], stats["snapshots"], stats["buffered"]) == (
        1,
        1,
        stats["messages"] - stats["applied"],
    )
    assert len(states) == stats["applied"] > 50 and spans[0]["end_ns"] is None


@pytest.mark.realdata
def test_the_real_captures_replay_like_the_reference(tmp_path, real_samples):
    from rlx_pipeline.capture.importers import import_files

    spot = import_files(sorted((real_samples / "hftbacktest").glob("*.gz")), tmp_path / "spot")
    usdm = import_files(sorted((real_samples / "cryptofeed").glob("BINANCE_FUTURES.*")), tmp_path / "usdm")
    days = [(spot, "ETH-USDT", "2024-08-08"), (spot, "ETH-USDT", "2024-08-09")]
    days += [(usdm, s, "2021-07-22") for s in ("SUSHI-USDT-PERP", "AKRO-USDT-PERP")]
    for files, symbol, date in days:
        paths = _golden(tmp_path / symbol / date, files, symbol, date)
        for batch_rows in (7, 65536):  # (rows one by one: minutes on these days)
            states, _, _ = replayed(*paths, venues.for_symbol(symbol).depth_rules, batch_rows, top_n=10)
        assert states, (symbol, date)
