"""The order book engine and the unified stream (pure: no Dagster).

from rlx_pipeline.book import build_unified, read_unified
lf = read_unified(data_dir, "BTC-USDT", "2024-08-09", "2024-08-10")   # polars LazyFrame over the days, with book
"""

from rlx_pipeline.book.engine import Book
from rlx_pipeline.book.read import (
    UnverifiedDay,
    iter_batches,
    read_book,
    read_invalid_intervals,
    read_unified,
    scan_day,
)
from rlx_pipeline.book.unified import UnifiedResult, book_path_for, build_unified, intervals_path_for

__all__ = [
    "Book",
    "UnifiedResult",
    "UnverifiedDay",
    "book_path_for",
    "build_unified",
    "intervals_path_for",
    "iter_batches",
    "read_book",
    "read_invalid_intervals",
    "read_unified",
    "scan_day",
]
