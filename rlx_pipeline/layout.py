"""Where everything lives under ``RLX_DATA_DIR``: the one map from (asset, partition) to paths.

data/
  lake/market-data/cryptofeed/{table}/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-09/1.snappy.parquet
                               the embedded local Crypto Lake (same key layout as S3)
  capture/                     raw capture files (*.jsonl.zst), finished ones only; *.partial while open
  staged/{table}/dt=.../symbol=.../data.parquet      normalized lake tables (lake_trades, ...), served
                               .../.candidate/, .../rejected/<time-run>/: a build being judged, builds that failed
  golden/{table}/dt=.../symbol=.../data.parquet      typed tables parsed from captures
  unified/dt=.../symbol=.../events.parquet           the reconstructed unified stream: events
  unified/dt=.../symbol=.../book.parquet             ... and the top-N book after each message
  unified/dt=.../symbol=.../served.json              which build is served, from which inputs (rlx_pipeline.gate)
  reports/{kind}/dt=.../symbol=.../                  report.json, report.md, *.png (validation, fidelity)
  reports/checks/dt=.../symbol=.../{check}.json      the latest outcome of each check (the gate's ledger)
  checkpoints/{kind}/dt=.../symbol=.../              resumable state of long computations
  alerts/alerts.jsonl                                asset-check alerts
  dagster/                                           the embedded Dagster instance's storage
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LAKE_PREFIX = "market-data/cryptofeed"
LAKE_TABLES = ("trades", "book", "book_delta_v2")


def lake_key(table: str, exchange: str, symbol: str, date: str) -> str:
    """Crypto Lake's object key (docs/crypto-lake.md), upper-case exchange and symbol."""
    return f"{LAKE_PREFIX}/{table}/exchange={exchange.upper()}/symbol={symbol.upper()}/dt={date}/1.snappy.parquet"


@dataclass(frozen=True)
class DataLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).absolute())

    # --- inputs -----------------------------------------------------------------------------------
    @property
    def lake_root(self) -> Path:
        return self.root / "lake"

    def lake_file(self, table: str, exchange: str, symbol: str, date: str) -> Path:
        return self.lake_root / lake_key(table, exchange, symbol, date)

    @property
    def capture_dir(self) -> Path:
        return self.root / "capture"

    # --- outputs ----------------------------------------------------------------------------------
    def _partition(self, base: Path, date: str, symbol: str) -> Path:
        return base / f"dt={date}" / f"symbol={symbol.upper()}"

    def staged(self, table: str, date: str, symbol: str) -> Path:
        """``table`` is one of ``trades``, ``book``, ``book_delta``."""
        return self._partition(self.root / "staged" / table, date, symbol) / "data.parquet"

    def golden(self, table: str, date: str, symbol: str) -> Path:
        """``table`` is one of ``trades``, ``agg_trades``, ``depth``, ``snapshots``, ``book_ticker``, ``coverage``."""
        return self._partition(self.root / "golden" / table, date, symbol) / "data.parquet"

    def unified(self, date: str, symbol: str) -> Path:
        """The unified stream's events; its book states are ``unified_book`` beside it."""
        return self._partition(self.root / "unified", date, symbol) / "events.parquet"

    def unified_book(self, date: str, symbol: str) -> Path:
        return self._partition(self.root / "unified", date, symbol) / "book.parquet"

    def report_dir(self, kind: str, date: str, symbol: str) -> Path:
        return self._partition(self.root / "reports" / kind, date, symbol)

    def checkpoint_dir(self, kind: str, date: str, symbol: str) -> Path:
        return self._partition(self.root / "checkpoints" / kind, date, symbol)

    @property
    def alerts_file(self) -> Path:
        return self.root / "alerts" / "alerts.jsonl"

    @property
    def lakeapi_cache_dir(self) -> Path:
        return self.root / "cache" / "lakeapi"
