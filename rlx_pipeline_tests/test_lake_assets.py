"""The acquisition assets through Dagster: staged files, metadata, blocking checks, and a failed day."""

from __future__ import annotations

import dagster as dg
import pyarrow.parquet as pq

from rlx_pipeline import gate
from rlx_pipeline.lake.synthetic import RawDaySpec, write_raw_day
from rlx_pipeline.orchestration.assets import acquisition
from rlx_pipeline.orchestration.resources import CryptoLakeResource
from rlx_pipeline_tests.conftest import DATE, PARTITION_KEY, SYMBOL


def _materialize(rlx, settings, selection=None):
    return dg.materialize(
        acquisition.assets + acquisition.checks,
        partition_key=PARTITION_KEY,
        resources={"rlx": rlx, "lake": CryptoLakeResource.from_settings(settings, environ={})},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        selection=selection,
    )


def test_acquisition_assets_stage_and_pass_their_checks(rlx, settings, layout):
    spec = RawDaySpec(date=DATE, symbol=SYMBOL, delta_messages=500, trades=400)
    write_raw_day(layout.lake_root, spec)
    result = _materialize(rlx, settings)
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"lake_trades_ok", "lake_book_ok", "lake_book_delta_ok"}
    assert all(e.passed for e in evaluations.values()), {k: e.description for k, e in evaluations.items()}
    rows = {
        e.asset_key.to_user_string(): e.materialization.metadata["rows"].value
        for e in result.get_asset_materialization_events()
    }
    assert rows["lake_trades"] == 400
    for table, asset in (("trades", "lake_trades"), ("book", "lake_book"), ("book_delta", "lake_book_delta")):
        assert pq.read_metadata(layout.staged(table, DATE, SYMBOL)).num_rows == rows[asset]


def test_a_truncated_day_fails_and_keeps_the_previous_staged_file(rlx, settings, layout):
    paths = write_raw_day(layout.lake_root, RawDaySpec(date=DATE, symbol=SYMBOL, delta_messages=300))
    assert _materialize(rlx, settings).success
    staged = layout.staged("book_delta", DATE, SYMBOL)
    before = staged.read_bytes()

    raw = paths["book_delta_v2"]
    raw.write_bytes(raw.read_bytes()[: raw.stat().st_size // 2])
    result = _materialize(rlx, settings, selection=[acquisition.lake_book_delta])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.cause.message if failure.step_failure_data.error.cause else ""
    message += failure.step_failure_data.error.message
    assert "book_delta_v2" in message and SYMBOL in message and DATE in message
    assert staged.read_bytes() == before
    # the gate knows: the day's lake_book_delta_ok no longer reads as its earlier pass
    [record] = gate.failed_checks(layout, DATE, SYMBOL)
    assert record.check == "lake_book_delta_ok" and record.run_id == result.run_id
    assert record.description.startswith("the build failed before it could be judged: ")
    assert "book_delta_v2" in record.description
    assert not list(staged.parent.glob(".candidate/*"))  # nothing left of the failed build
