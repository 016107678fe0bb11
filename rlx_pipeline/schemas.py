"""Arrow schemas of every table the pipeline stages: the contract between its parts.

Prices and sizes are int64 fixed point at ``fixed_point.SCALE`` (1e-8 units); times are
``timestamp[ns, UTC]``. Staged lake tables keep Crypto Lake's normalized names (``origin_time`` is the
exchange's event time, ``received_time`` the collector's receive time).
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("ns", tz="UTC")
BOOK_LEVELS = 20  # Crypto Lake's `book` table carries 20 levels a side

# --- staged Crypto Lake tables (lake_trades, lake_book, lake_book_delta) -------------------------------
STAGED_TRADES = pa.schema(
    [
        ("origin_time", TS),
        ("received_time", TS),
        ("trade_id", pa.int64()),
        ("side", pa.string()),  # taker side: "buy" | "sell"
        ("price", pa.int64()),
        ("quantity", pa.int64()),
    ]
)

STAGED_BOOK_DELTA = pa.schema(
    [
        ("origin_time", TS),
        ("received_time", TS),
        ("sequence_number", pa.int64()),  # Binance final update id `u` of the message
        ("side_is_bid", pa.bool_()),
        ("price", pa.int64()),
        ("size", pa.int64()),  # absolute size; 0 deletes the level
    ]
)


def _book_level_fields(levels: int, prefix: str = "") -> list[pa.Field]:
    fields = []
    for side in ("bid", "ask"):
        for i in range(levels):
            fields.append(pa.field(f"{prefix}{side}_{i}_price", pa.int64()))  # null: no level there
            fields.append(pa.field(f"{prefix}{side}_{i}_size", pa.int64()))
    return fields


STAGED_BOOK = pa.schema(
    [("origin_time", TS), ("received_time", TS), ("sequence_number", pa.int64())]
    + _book_level_fields(BOOK_LEVELS)
)

# --- golden tables parsed from captures (golden_samples) ----------------------------------------------
# Every golden row keeps `capture_ns` (local receive time) and where it came from (file, line).
_ORIGIN = [("capture_ns", pa.int64()), ("source_file", pa.string()), ("line_no", pa.int64())]

GOLDEN_TRADES = pa.schema(
    _ORIGIN
    + [
        ("event_time", TS),  # E
        ("trade_time", TS),  # T
        ("trade_id", pa.int64()),  # t
        ("price", pa.int64()),
        ("quantity", pa.int64()),
        ("is_buyer_maker", pa.bool_()),  # m: true -> the taker sold
    ]
)

GOLDEN_AGG_TRADES = pa.schema(
    _ORIGIN
    + [
        ("event_time", TS),
        ("trade_time", TS),
        ("agg_trade_id", pa.int64()),  # a
        ("first_trade_id", pa.int64()),  # f
        ("last_trade_id", pa.int64()),  # l
        ("price", pa.int64()),
        ("quantity", pa.int64()),
        ("is_buyer_maker", pa.bool_()),
    ]
)

# One row per price level of a depth message; message-level fields repeat.  A message with no levels
# keeps one row with null side/price/size so that update ids are never lost.
GOLDEN_DEPTH = pa.schema(
    _ORIGIN
    + [
        ("event_time", TS),
        ("first_update_id", pa.int64()),  # U
        ("final_update_id", pa.int64()),  # u
        ("prev_final_update_id", pa.int64()),  # pu (USD-M futures only, else null)
        ("side_is_bid", pa.bool_()),
        ("price", pa.int64()),
        ("size", pa.int64()),
    ]
)

GOLDEN_SNAPSHOTS = pa.schema(
    _ORIGIN
    + [
        ("last_update_id", pa.int64()),
        ("side_is_bid", pa.bool_()),
        ("level", pa.int32()),
        ("price", pa.int64()),
        ("size", pa.int64()),
    ]
)

GOLDEN_BOOK_TICKER = pa.schema(
    _ORIGIN
    + [
        ("update_id", pa.int64()),  # u
        ("bid_price", pa.int64()),
        ("bid_qty", pa.int64()),
        ("ask_price", pa.int64()),
        ("ask_qty", pa.int64()),
    ]
)

# --- unified stream (unified_stream) -------------------------------------------------------------------
EVENT_SNAPSHOT = 0  # the book was (re)seeded from a `book` row
EVENT_BOOK_DELTA = 1
EVENT_TRADE = 2
SOURCE_RANK = {EVENT_SNAPSHOT: 0, EVENT_BOOK_DELTA: 1, EVENT_TRADE: 2}


def unified_events_schema() -> pa.Schema:
    """``events.parquet``: one row per event, in (origin_time, event_type, sequence number (trades: trade id), row
    order) order. ``is_last_in_message`` marks a delta message's last row (the book after the whole message is the
    one to compare with an exchange's state at update id ``sequence_number``)."""
    return pa.schema(
        [
            ("origin_time", TS),
            ("received_time", TS),
            ("event_type", pa.int8()),
            ("sequence_number", pa.int64()),  # deltas/snapshots: Binance `u`; trades: last applied `u`
            ("is_last_in_message", pa.bool_()),
            ("side_is_bid", pa.bool_()),  # deltas; trades: true when the taker bought
            ("price", pa.int64()),
            ("size", pa.int64()),  # delta: new absolute size; trade: quantity
            ("trade_id", pa.int64()),
        ]
    )


def invalid_intervals_schema() -> pa.Schema:
    """``invalid_intervals.parquet`` beside a day's unified stream: the spans whose book states are not trusted
    (``book_valid`` false), from the first such state (``start``) to the state that re-seeded the book (``end``;
    the last untrusted state's time when the day ends first)."""
    return pa.schema(
        [
            ("start", TS),
            ("end", TS),
            ("first_update_id", pa.int64()),  # sequence number of the first untrusted state
            ("last_update_id", pa.int64()),  # ... and of the last one
            ("cause", pa.string()),  # lost_update_id (named by the golden samples) or snapshot_disagreed
            ("messages", pa.int64()),  # untrusted book states (one per delta message)
            ("first_event_index", pa.int64()),  # event rows [first, end) of events.parquet carry them
            ("end_event_index", pa.int64()),
            ("resolved", pa.bool_()),  # False: the day ended before a snapshot re-seeded the book
        ]
    )


def unified_book_schema(top_n: int = 10) -> pa.Schema:
    """``book.parquet``: the top-N book after the event at ``event_index`` (its row in ``events.parquet``); it
    holds until the next book row."""
    return pa.schema(
        [
            ("event_index", pa.int64()),
            ("origin_time", TS),
            ("received_time", TS),
            ("event_type", pa.int8()),
            ("sequence_number", pa.int64()),
            # The book is complete (every level the exchange had) between the best price and these bounds:
            # levels beyond them were never in a snapshot and are only known where a delta touched them.
            ("bid_known_min_price", pa.int64()),
            ("ask_known_max_price", pa.int64()),
            # False from a proven loss (or the last snapshot that agreed) until a snapshot re-seeds the book:
            # the state may be wrong (``rlx_pipeline.book.unified``; the spans: ``invalid_intervals.parquet``)
            ("book_valid", pa.bool_()),
        ]
        + _book_level_fields(top_n)
    )
