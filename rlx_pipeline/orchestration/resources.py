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
    require_golden: bool = False  # RLX_REQUIRE_GOLDEN: an unmeasurable check fails instead of warning
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
            require_golden=s.require_golden,
            **s.thresholds.__dict__,
        )

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(**{f: getattr(self, f) for f in Thresholds.__dataclass_fields__})


class CryptoLakeResource(dg.ConfigurableResource):
    """Where Crypto Lake days come from: ``local`` (a directory in S3's key layout) or ``lakeapi``.

    Credentials are optional: from ``dg.EnvVar`` (AWS_ACCESS_KEY_ID, ...) when set, else boto3's default
    chain (profile, instance role). The endpoint follows AWS_ENDPOINT_URL, so a local S3 works unchanged.
    """

    source: str = "local"
    lake_dir: str = "data/lake"
    bucket: str = "qnt.data"
    exchange: str = "BINANCE"
    cache_dir: str = ""  # lakeapi's cache; default <RLX_DATA_DIR>/cache/lakeapi (never ./.lake_cache)
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    aws_profile: str | None = None
    read_mode: str = "stream"  # lakeapi: stream row groups over S3, or load_data (one frame: small days)
    batch_rows: int = 1_000_000  # bounds staging memory
    min_rows: int = 1  # a day with fewer rows fails its check
    min_hours_covered: int = 23  # RLX_LAKE_MIN_HOURS: UTC hours of the day each table must cover

    @classmethod
    def from_settings(cls, s: Settings, environ: dict[str, str] | None = None) -> CryptoLakeResource:
        import os

        env = os.environ if environ is None else environ
        creds = {
            field: dg.EnvVar(var)
            for field, var in (
                ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
                ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                ("aws_session_token", "AWS_SESSION_TOKEN"),
                ("aws_profile", "AWS_PROFILE"),
            )
            if env.get(var)
        }
        return cls(
            source=s.lake_source,
            lake_dir=str(s.lake_root),
            bucket=s.lake_bucket,
            exchange=s.exchange,
            cache_dir=str(s.layout.lakeapi_cache_dir),
            min_hours_covered=s.lake_min_hours,
            **creds,
        )

    def open(self, layout: DataLayout):
        """The configured ``rlx_pipeline.lake.source.LakeSource``."""
        from rlx_pipeline.lake.source import make_source

        return make_source(
            self.source,
            lake_dir=self.lake_dir,
            cache_dir=self.cache_dir or layout.lakeapi_cache_dir,
            bucket=self.bucket,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            aws_profile=self.aws_profile,
            read_mode=self.read_mode,
        )


def build_resources(settings: Settings) -> dict[str, object]:
    return {"rlx": RlxSettings.from_settings(settings), "lake": CryptoLakeResource.from_settings(settings)}
