"""The day catalog (``rlx_pipeline.catalog``): which days x symbols can be used, as one unpartitioned asset.

day_catalog         reports/catalog/catalog.parquet + calendar.png; the table and the calendar (days x symbols,
                    coloured by status) in the materialization's metadata
day_catalog_sensor  requests day_catalog after any partition's validation, reconstruction or fidelity
                    materializes, so the catalog stays current with the partition runs
hftbacktest_export  optional, per partition: exports/hftbacktest/dt=/symbol=/events.npz; in no job or schedule,
                    materialized only when asked for (UI, CLI, or a job a user defines)
"""

import base64
import io

import dagster as dg
import polars as pl
from dagster import DagsterEventType, EventRecordsFilter

from rlx_pipeline import catalog, storage
from rlx_pipeline.orchestration.partitions import PARTITIONS, date_symbol
from rlx_pipeline.orchestration.resources import RlxSettings

WATCHED = ("validation_report", "unified_stream", "fidelity_report", "golden_samples")
_COLOURS = {catalog.USABLE: "#2ca02c", catalog.FAILED: "#d62728", catalog.NOT_RECONSTRUCTED: "#ff7f0e"}
_NOT_RUN_COLOUR = "#dddddd"


def calendar_png(df: pl.DataFrame) -> bytes | None:
    """Days (x) by symbols (y), each cell coloured by status."""
    if df.is_empty():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    dates, symbols = sorted(set(df["date"])), sorted(set(df["symbol"]))
    img = [[to_rgb(_NOT_RUN_COLOUR)] * len(dates) for _ in symbols]
    for r in df.iter_rows(named=True):
        img[symbols.index(r["symbol"])][dates.index(r["date"])] = to_rgb(
            _COLOURS.get(r["status"], _NOT_RUN_COLOUR)
        )
    fig, ax = plt.subplots(figsize=(min(16, 2 + 0.25 * len(dates)), 0.6 + 0.4 * len(symbols)))
    ax.imshow(img, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(symbols)), symbols, fontsize=7)
    step = max(1, len(dates) // 15)
    ax.set_xticks(range(0, len(dates), step), dates[::step], fontsize=6, rotation=45, ha="right")
    handles = [Patch(color=c, label=s) for s, c in (*_COLOURS.items(), (catalog.NOT_RUN, _NOT_RUN_COLOUR))]
    ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _markdown(df: pl.DataFrame, limit: int = 200) -> str:
    cols = [
        "date",
        "symbol",
        "status",
        "failed_checks",
        "build",
        "fidelity",
        "invalid_share",
        "golden_coverage",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in df.tail(limit).iter_rows(named=True):
        cells = [
            ", ".join(r[c]) if c == "failed_checks" else ("-" if r[c] is None else str(r[c])) for c in cols
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dg.asset(group_name="catalog", deps=list(WATCHED), kinds={"polars"}, owners=["team:market-data"])
def day_catalog(context: dg.AssetExecutionContext, rlx: RlxSettings) -> dg.MaterializeResult:
    """Every day x symbol from the first to the last day the pipeline wrote anything for: usable, failed (and
    which checks), not reconstructed or not run; served build, fidelity, invalid share, golden coverage. The same
    as `rlx-pipeline status` and `rlx_pipeline.catalog.read_catalog()`."""
    symbols = PARTITIONS.get_partitions_def_for_dimension("symbol").get_partition_keys()
    df = catalog.read_catalog(rlx.data_dir, symbols)
    out = rlx.layout.root / "reports" / "catalog"
    storage.write_table(out / "catalog.parquet", df.to_arrow(), fixed_point_scale=False)
    png = calendar_png(df)
    md = _markdown(df)
    if png:
        storage.write_bytes(out / "calendar.png", png)
        md = f"![calendar](data:image/png;base64,{base64.b64encode(png).decode()})\n\n" + md
    counts = {s: int((df["status"] == s).sum()) for s in catalog.STATUSES} if len(df) else {}
    context.log.info(f"day catalog: {len(df)} day(s) x symbol: {counts}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(df)),
            "statuses": dg.MetadataValue.json(counts),
            "usable": dg.MetadataValue.int(counts.get(catalog.USABLE, 0)),
            "catalog": dg.MetadataValue.md(md),
            "path": dg.MetadataValue.path(str(out / "catalog.parquet")),
        }
    )


day_catalog_job = dg.define_asset_job(
    "day_catalog_job",
    selection=dg.AssetSelection.assets(day_catalog),
    description="Refresh the day catalog (requested by day_catalog_sensor).",
)


@dg.sensor(
    job=day_catalog_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A partition's validation, golden samples, reconstruction or fidelity materialized -> day_catalog.",
)
def day_catalog_sensor(context: dg.SensorEvaluationContext):
    after = int(context.cursor) if context.cursor else None
    newest = after or 0
    for key in WATCHED:
        records = context.instance.get_event_records(
            EventRecordsFilter(
                event_type=DagsterEventType.ASSET_MATERIALIZATION,
                asset_key=dg.AssetKey(key),
                after_cursor=after,
            ),
            limit=1,
            ascending=False,
        )
        if records:
            newest = max(newest, records[0].storage_id)
    if newest == (after or 0):
        return dg.SkipReason("no partition materialized since the last catalog")
    context.update_cursor(str(newest))
    return dg.RunRequest(run_key=f"day_catalog@{newest}")


@dg.asset(
    partitions_def=PARTITIONS,
    group_name="export",
    deps=["unified_stream", "fidelity_report"],
    kinds={"numpy"},
    owners=["team:market-data"],
)
def hftbacktest_export(context: dg.AssetExecutionContext, rlx: RlxSettings) -> dg.MaterializeResult:
    """The partition as an hftbacktest .npz (rlx_pipeline.export); refused when the day is not usable. Not in the
    daily job: materialize it (or put it in a job of your own) to keep the files up to date."""
    from rlx_pipeline.export import export_hftbacktest

    date, symbol = date_symbol(context)
    dest = rlx.layout.root / "exports" / "hftbacktest" / f"dt={date}" / f"symbol={symbol}" / "events.npz"
    try:
        res = export_hftbacktest(rlx.data_dir, symbol, date, date, dest)
    except catalog.DayNotUsable as e:
        raise dg.Failure(str(e)) from e
    context.log.info(f"hftbacktest export {date}|{symbol}: {res.rows:,} rows in {res.seconds:.1f} s")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(res.rows),
            "events_per_s": dg.MetadataValue.float(round(res.events_per_s, 1)),
            "local_offset_ns": dg.MetadataValue.int(res.local_offset_ns),
            "path": dg.MetadataValue.path(str(dest)),
        }
    )


assets = [day_catalog, hftbacktest_export]
checks: list = []
sensors = [day_catalog_sensor]
