#!/usr/bin/env bash
# The real ETHUSDT capture in ../shared/real-samples/hftbacktest through the whole pipeline, with the project's
# own CLI and Dagster's: imported as golden samples, rendered as Crypto Lake tables, then both days materialized.
# Every check must pass (fidelity >= 99.9%); `dagster asset materialize` exits non-zero otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
samples=../shared/real-samples/hftbacktest
RLX_DATA_DIR=$(mktemp -d)
DAGSTER_HOME=$(mktemp -d)
# the sample covers minutes of each day: RLX_LAKE_MIN_HOURS says so (published lake days must cover 23 hours)
export RLX_DATA_DIR DAGSTER_HOME RLX_SYMBOLS=ETH-USDT RLX_LAKE_MIN_HOURS=1
rlx-pipeline capture import "$samples"/*.gz
rlx-pipeline lake from-capture "$RLX_DATA_DIR"/capture/imported/*.jsonl.zst
for day in 2024-08-08 2024-08-09; do
  dagster asset materialize -m rlx_pipeline.definitions --select '*' --partition "$day|ETH-USDT"
  python - "$day" <<'PY'
import json, os, sys
from rlx_pipeline.layout import DataLayout
day = sys.argv[1]
report = json.loads((DataLayout(os.environ["RLX_DATA_DIR"]).report_dir("fidelity", day, "ETH-USDT") / "report.json").read_text())
comps = {k: f"{v['matched']}/{v['total']}" for k, v in report["components"].items()}
print(f"real ETH-USDT {day}: fidelity {report['score']:.4%}  {comps}")
assert report["score"] >= 0.999, report
PY
done
