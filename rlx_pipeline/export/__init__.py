"""Exports of usable days to the formats researchers' tools read (pure: no Dagster).

    from rlx_pipeline.export import export_hftbacktest, export_tardis
    export_hftbacktest("data", "BTC-USDT", "2024-08-09", "2024-08-09", "btcusdt_20240809.npz")
    export_tardis("data", "BTC-USDT", "2024-08-09", "2024-08-09", "tardis/")

Both refuse a day that is not usable (``rlx_pipeline.catalog``), stream (bounded memory for a day or a month)
and share one feed (``rlx_pipeline.export.feed``): hftbacktest's converter run on the Tardis files gives the
same array as the direct export (at Tardis's microsecond resolution).
"""

from rlx_pipeline.export.hftbacktest_npz import ExportResult, export_hftbacktest
from rlx_pipeline.export.tardis_csv import TardisResult, export_tardis

__all__ = ["ExportResult", "TardisResult", "export_hftbacktest", "export_tardis"]
