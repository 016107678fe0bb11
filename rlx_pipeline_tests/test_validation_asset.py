"""validation_report through Dagster on tables written with the contract schemas: the checks carry value,
threshold and n; a day without golden samples passes on the lake-only checks unless require_golden is set."""

from __future__ import annotations

import dagster as dg

from rlx_pipeline.orchestration.assets import validation
from rlx_pipeline.orchestration.resources import build_resources
from rlx_pipeline_tests.conftest import PARTITION_KEY
from rlx_pipeline_tests.validation_fixtures import write_day


def _run(settings, run_config=None):
    return dg.materialize(
        validation.assets + validation.checks,
        partition_key=PARTITION_KEY,
        resources=build_resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        run_config=run_config,
    )


def test_checks_carry_value_threshold_and_n(settings, layout):
    write_day(layout)
    result = _run(settings)
    assert result.success
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evals) == {"validation_ks", "validation_tail", "validation_gaps", "validation_origin_time"}
    ks = evals["validation_ks"]
    assert ks.passed
    md = {k: v.value for k, v in ks.metadata.items()}
    assert md["value"] == 0.0 and md["threshold"] == settings.thresholds.ks_d_max and md["n"] > 0
    assert md["d/trade_size"] == 0.0
    mat = result.get_asset_materialization_events()[0].materialization
    assert "data:image/png;base64," in mat.metadata["report"].value
    assert mat.metadata["golden_minutes_covered"].value == 60


def test_require_golden_fails_a_day_without_golden_samples(settings, layout):
    write_day(layout, golden=False)
    lenient = _run(settings)
    assert lenient.success
    assert all(e.passed for e in lenient.get_asset_check_evaluations())
    strict = _run(settings, {"ops": {"validation_report": {"config": {"require_golden": True}}}})
    status = {e.check_name: e.passed for e in strict.get_asset_check_evaluations()}
    assert status == {
        "validation_ks": False,
        "validation_tail": False,
        "validation_gaps": True,
        "validation_origin_time": True,
    }
