"""validation_report through Dagster on tables written with the contract schemas: the checks carry value,
threshold and n; on a day without golden samples the golden comparisons are non-passing warnings (never green,
never blocking) and fail under RLX_REQUIRE_GOLDEN=1 or the run's require_golden."""

from __future__ import annotations

import dagster as dg
import pytest

from rlx_pipeline.orchestration.assets import validation
from rlx_pipeline.orchestration.resources import build_resources
from rlx_pipeline.settings import Settings
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


def _evals(result) -> dict[str, tuple[bool, str]]:
    return {e.check_name: (e.passed, e.severity.value) for e in result.get_asset_check_evaluations()}


def test_ks_without_golden_samples_is_a_non_passing_warning_that_does_not_block(settings, layout):
    write_day(layout, golden=False)
    result = _run(settings)
    assert result.success  # a WARN that did not pass fails neither the step nor the run
    assert _evals(result) == {
        "validation_ks": (False, "WARN"),
        "validation_tail": (False, "WARN"),
        "validation_gaps": (True, "ERROR"),
        "validation_origin_time": (True, "ERROR"),
    }
    ks = next(e for e in result.get_asset_check_evaluations() if e.check_name == "validation_ks")
    assert ks.metadata["status"].value == "not_checked"
    assert "not checked (no golden samples)" in ks.description
    mat = result.get_asset_materialization_events()[0].materialization
    assert mat.metadata["verdict"].value == "passed (not checked: ks, tail)"


@pytest.mark.parametrize("how", ["RLX_REQUIRE_GOLDEN=1", "run config"])
def test_require_golden_fails_a_day_without_golden_samples(tmp_path, layout, how):
    write_day(layout, golden=False)
    env = {"RLX_DATA_DIR": str(layout.root), "RLX_LAKE_MIN_HOURS": "1"}
    run_config = None
    if how == "run config":
        run_config = {"ops": {"validation_report": {"config": {"require_golden": True}}}}
    else:
        env["RLX_REQUIRE_GOLDEN"] = "1"
    strict = _run(Settings.from_env(env), run_config)
    assert not strict.success
    assert _evals(strict) == {
        "validation_ks": (False, "ERROR"),
        "validation_tail": (False, "ERROR"),
        "validation_gaps": (True, "ERROR"),
        "validation_origin_time": (True, "ERROR"),
    }
    # the per-run override also relaxes the setting
    if how == "RLX_REQUIRE_GOLDEN=1":
        relaxed = _run(
            Settings.from_env(env), {"ops": {"validation_report": {"config": {"require_golden": False}}}}
        )
        assert relaxed.success and _evals(relaxed)["validation_ks"] == (False, "WARN")
