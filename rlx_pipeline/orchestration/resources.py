"""Dagster resources: the settings in force, shown in the UI, and the handles the assets use."""

from __future__ import annotations

import dagster as dg

from rlx_pipeline.layout import DataLayout
from rlx_pipeline.settings import Settings, Thresholds


class RlxSettings(dg.ConfigurableResource):
    """The project's settings (RLX_* environment variables); one place for paths and thresholds."""

    data_dir: str
    lake_source: str
    lake_dir: str
    lake_bucket: str
    exchange: str
    top_n: int
    ui_url: str
    ks_d_max: float
    alpha_diff_max: float
    gap_rate_max: float
    origin_time_invalid_max: float
    origin_time_tolerance_s: float
    unseeded_delta_max: float
    fidelity_min: float
    self_consistency_min: float
    golden_coverage_min: float

    @classmethod
    def from_settings(cls, s: Settings) -> RlxSettings:
        return cls(
            data_dir=str(s.data_dir),
            lake_source=s.lake_source,
            lake_dir=str(s.lake_root),
            lake_bucket=s.lake_bucket,
            exchange=s.exchange,
            top_n=s.top_n,
            ui_url=s.ui_url,
            **s.thresholds.__dict__,
        )

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(**{f: getattr(self, f) for f in Thresholds.__dataclass_fields__})


def build_resources(settings: Settings) -> dict[str, object]:
    return {"rlx": RlxSettings.from_settings(settings)}
