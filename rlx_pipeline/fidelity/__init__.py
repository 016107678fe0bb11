"""Fidelity of the reconstruction against the golden samples (pure: no Dagster)."""

from rlx_pipeline.fidelity.measure import Fidelity, measure
from rlx_pipeline.fidelity.report import write_report

__all__ = ["Fidelity", "measure", "write_report"]
