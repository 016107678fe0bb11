"""Fidelity of the reconstruction against the golden samples (pure: no Dagster)."""

from rlx_pipeline.fidelity.golden_book import GoldenBook
from rlx_pipeline.fidelity.measure import Fidelity, measure
from rlx_pipeline.fidelity.report import write_report

__all__ = ["Fidelity", "GoldenBook", "measure", "write_report"]
