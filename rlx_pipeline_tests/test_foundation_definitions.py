import subprocess
import sys
from pathlib import Path

import dagster as dg

from rlx_pipeline.definitions import defs

ROOT = Path(__file__).resolve().parents[1]
GRAPH = [
    "lake_trades",
    "lake_book",
    "lake_book_delta",
    "golden_samples",
    "validation_report",
    "unified_stream",
    "fidelity_report",
]


def test_definitions_load_with_the_whole_graph():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(GRAPH) <= keys
    ups = {k.to_user_string() for k in graph.get(dg.AssetKey("unified_stream")).parent_keys}
    assert "validation_report" in ups
    fid = {k.to_user_string() for k in graph.get(dg.AssetKey("fidelity_report")).parent_keys}
    assert {"unified_stream", "golden_samples"} <= fid


def test_every_main_asset_shares_the_date_symbol_partitions():
    graph = defs.resolve_asset_graph()
    for name in GRAPH:
        pdef = graph.get(dg.AssetKey(name)).partitions_def
        assert isinstance(pdef, dg.MultiPartitionsDefinition), name
        assert pdef.get_partition_key_from_str("2024-08-09|BTC-USDT").keys_by_dimension == {
            "date": "2024-08-09",
            "symbol": "BTC-USDT",
        }


def test_every_check_is_blocking():
    checks = list(defs.resolve_asset_graph().asset_check_keys)
    assert checks
    graph = defs.resolve_asset_graph()
    for key in checks:
        assert graph.get_check_spec(key).blocking, key


def test_dagster_cli_validates_the_code_location():
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "rlx_pipeline.definitions"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_invalid_settings_fail_at_load_time_naming_the_variable():
    out = subprocess.run(
        [sys.executable, "-c", "import rlx_pipeline.definitions"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"RLX_SYMBOLS": "nope", "PATH": "/usr/bin"},
    )
    assert out.returncode != 0
    assert "RLX_SYMBOLS" in out.stderr


def test_the_lake_pool_of_the_production_profile_is_declared_by_the_downloads():
    import yaml

    graph = defs.resolve_asset_graph()
    pools = {k.to_user_string(): graph.get(k).pools for k in graph.get_all_asset_keys()}
    assert {k for k, v in pools.items() if v} == {"lake_trades", "lake_book", "lake_book_delta"}
    assert {p for v in pools.values() if v for p in v} == {"lake"}
    profile = yaml.safe_load((Path(__file__).parents[1] / "deploy/production/dagster.yaml").read_text())
    assert profile["concurrency"]["pools"]["default_limit"] == 4
