"""Typed settings from environment variables: the project's public configuration interface.

The names are stable. Invalid values fail at load time (``dagster definitions validate`` included) with a
``SettingsError`` naming the variable. The Dagster resources in ``orchestration.resources`` are built from
one ``Settings`` object, so the UI shows the values in effect.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from rlx_pipeline import venues
from rlx_pipeline.layout import DataLayout


class SettingsError(ValueError):
    """A setting with an invalid value; the message names the environment variable."""


_SYMBOL_RE = re.compile(
    r"^[A-Z0-9]+-[A-Z0-9]+(-[A-Z0-9]+)?$"
)  # BASE-QUOTE[-MARKET]: the market names the venue


def _url(value: str | None) -> str | None:
    return None if value is None else value.rstrip("/")


@dataclass(frozen=True)
class Thresholds:
    """Gates of the blocking checks. Defaults and their justification: README, section Settings."""

    ks_d_max: float = 0.10  # RLX_KS_D_MAX
    alpha_diff_max: float = 0.30  # RLX_ALPHA_DIFF_MAX
    gap_rate_max: float = 0.002  # RLX_GAP_RATE_MAX: share of the day inside invalid intervals (README)
    origin_time_invalid_max: float = 0.001  # RLX_ORIGIN_TIME_INVALID_MAX
    origin_time_tolerance_s: float = 60.0  # RLX_ORIGIN_TIME_TOLERANCE_S: slack around the partition's day
    unseeded_delta_max: float = (
        0.01  # RLX_UNSEEDED_DELTA_MAX: share of deltas before the first usable snapshot
    )
    fidelity_min: float = 0.999  # RLX_FIDELITY_MIN
    self_consistency_min: float = 0.999  # RLX_SELF_CONSISTENCY_MIN: top-20 vs lake `book` rows
    golden_coverage_min: float = 0.0  # RLX_GOLDEN_COVERAGE_MIN: warns (never blocks) below it


_THRESHOLD_ENV = {f.name: "RLX_" + f.name.upper() for f in fields(Thresholds)}


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")  # RLX_DATA_DIR
    lake_source: str = "local"  # RLX_LAKE_SOURCE: local | lakeapi
    lake_dir: Path | None = None  # RLX_LAKE_DIR (default: <data_dir>/lake)
    lake_bucket: str = "qnt.data"  # RLX_LAKE_BUCKET
    symbols: tuple[str, ...] = ("BTC-USDT", "ETH-USDT")  # RLX_SYMBOLS
    partition_start: str = "2024-01-01"  # RLX_PARTITION_START
    top_n: int = 10  # RLX_TOP_N: book levels carried in the unified stream
    # RLX_CAPTURE_WS_URL / RLX_CAPTURE_REST_URL: a peer serving every venue (a local exchange); unset: each
    # symbol's venue's own endpoints (``rlx_pipeline.venues``)
    capture_ws_url: str | None = None
    capture_rest_url: str | None = None
    schedule_utc: str = "03:00"  # RLX_SCHEDULE_UTC: daily run, after Crypto Lake publishes the day
    ui_url: str = "http://127.0.0.1:3000"  # RLX_UI_URL: base of the links in alerts
    # RLX_LAKE_MIN_HOURS: UTC hours of the day each lake table must cover (Crypto Lake publishes whole days)
    lake_min_hours: int = 23
    # RLX_REQUIRE_GOLDEN: a check that could not measure (no or too few golden samples) fails instead of warning
    require_golden: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)

    @property
    def lake_root(self) -> Path:
        return Path(self.lake_dir) if self.lake_dir else self.layout.lake_root

    @property
    def schedule_hour_minute(self) -> tuple[int, int]:
        hh, mm = self.schedule_utc.split(":")
        return int(hh), int(mm)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            v = env.get(name)
            return v.strip() if v is not None and v.strip() != "" else None

        def num(
            name: str, default: float, conv: type = float, lo: float | None = None, hi: float | None = None
        ):
            raw = get(name)
            if raw is None:
                return default
            try:
                value = conv(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r}: expected a {conv.__name__}") from None
            if not math.isfinite(value):  # nan compares false with every bound: it would switch a check off
                raise SettingsError(f"{name}={raw!r}: expected a finite number")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise SettingsError(f"{name}={raw!r}: must be between {lo} and {hi}")
            return value

        d = cls()
        source = (get("RLX_LAKE_SOURCE") or d.lake_source).lower()
        if source not in ("local", "lakeapi"):
            raise SettingsError(f"RLX_LAKE_SOURCE={source!r}: expected 'local' or 'lakeapi'")

        symbols = d.symbols
        if (raw := get("RLX_SYMBOLS")) is not None:
            symbols = tuple(s.strip().upper() for s in raw.split(",") if s.strip())
            bad = [s for s in symbols if not _SYMBOL_RE.match(s)]
            if bad or not symbols:
                raise SettingsError(
                    f"RLX_SYMBOLS={raw!r}: expected Crypto Lake symbols like BTC-USDT,ETH-USDT (bad: {bad})"
                )
            if len(set(symbols)) != len(symbols):
                raise SettingsError(f"RLX_SYMBOLS={raw!r}: a symbol is listed twice")
            for sym in symbols:
                try:
                    venues.for_symbol(sym)
                except venues.UnknownVenueError as exc:
                    raise SettingsError(f"RLX_SYMBOLS={raw!r}: {exc}") from None

        start = get("RLX_PARTITION_START") or d.partition_start
        try:
            dt.date.fromisoformat(start)
        except ValueError:
            raise SettingsError(f"RLX_PARTITION_START={start!r}: expected a date YYYY-MM-DD") from None

        if (raw := get("RLX_EXCHANGE")) is not None:
            # One deployment serves spot and perp side by side: each symbol names its own venue.
            raise SettingsError(
                f"RLX_EXCHANGE={raw!r} is no longer read: each symbol of RLX_SYMBOLS names its venue "
                "(BTC-USDT -> BINANCE spot, BTC-USDT-PERP -> BINANCE_FUTURES USD-M); unset RLX_EXCHANGE"
            )

        schedule = get("RLX_SCHEDULE_UTC") or d.schedule_utc
        if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", schedule):
            raise SettingsError(f"RLX_SCHEDULE_UTC={schedule!r}: expected HH:MM (UTC)")

        for name in ("RLX_CAPTURE_WS_URL", "RLX_CAPTURE_REST_URL", "RLX_UI_URL"):
            v = get(name)
            if v is not None and not re.match(r"^(wss?|https?)://", v):
                raise SettingsError(f"{name}={v!r}: expected a ws://, wss://, http:// or https:// URL")

        th_defaults = Thresholds()
        th = {}
        for fname, env_name in _THRESHOLD_ENV.items():
            default = getattr(th_defaults, fname)
            hi = None if fname == "origin_time_tolerance_s" else 1.0
            th[fname] = num(env_name, default, float, 0.0, hi)

        require_golden = (get("RLX_REQUIRE_GOLDEN") or "0").lower()
        if require_golden not in ("0", "1", "true", "false"):
            raise SettingsError(f"RLX_REQUIRE_GOLDEN={require_golden!r}: expected 0 or 1")

        lake_dir = get("RLX_LAKE_DIR")
        return cls(
            data_dir=Path(get("RLX_DATA_DIR") or d.data_dir),
            lake_source=source,
            lake_dir=Path(lake_dir) if lake_dir else None,
            lake_bucket=get("RLX_LAKE_BUCKET") or d.lake_bucket,
            symbols=symbols,
            partition_start=start,
            top_n=num("RLX_TOP_N", d.top_n, int, 1, 1000),
            capture_ws_url=_url(get("RLX_CAPTURE_WS_URL")),
            capture_rest_url=_url(get("RLX_CAPTURE_REST_URL")),
            schedule_utc=schedule,
            ui_url=(get("RLX_UI_URL") or d.ui_url).rstrip("/"),
            lake_min_hours=num("RLX_LAKE_MIN_HOURS", d.lake_min_hours, int, 0, 24),
            require_golden=require_golden in ("1", "true"),
            thresholds=Thresholds(**th),
        )
