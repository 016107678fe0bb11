"""Validation of a day's historical data against its golden samples (pure: no Dagster).

from rlx_pipeline.validation import validate_day, write_report
v = validate_day(layout, "2024-08-09", "BTC-USDT", Thresholds())
v.passed, v.failed, v.ks, v.tails
"""

from rlx_pipeline.validation.day import DayValidation, validate_day
from rlx_pipeline.validation.report import write_report
from rlx_pipeline.validation.stats import ks, power_law

__all__ = ["DayValidation", "ks", "power_law", "validate_day", "write_report"]
