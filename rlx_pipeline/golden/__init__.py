"""Golden samples: raw Binance captures, parsed into typed tables with their continuity and coverage.

from rlx_pipeline.golden import capture_files_for, build_golden
files = capture_files_for(layout.capture_dir, "BTC-USDT", "2024-08-09")
result = build_golden(files, "BTC-USDT", "2024-08-09", lambda table: layout.golden(table, date, symbol))
"""

from rlx_pipeline.golden.discover import capture_files_for, partial_files_for
from rlx_pipeline.golden.parse import TABLES, GoldenResult, build_golden

__all__ = ["TABLES", "GoldenResult", "build_golden", "capture_files_for", "partial_files_for"]
