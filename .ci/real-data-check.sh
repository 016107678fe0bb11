#!/usr/bin/env bash
# The real captures in ../shared/real-samples through the whole pipeline, with the project's own CLI and Dagster's:
# imported as golden samples, rendered as Crypto Lake tables, then materialized: the ETHUSDT spot days
# (hftbacktest) and the USD-M perpetuals (cryptofeed BINANCE_FUTURES, 2021-07-22). Every blocking check must pass
# (fidelity >= 99.9%); `dagster asset materialize` exits non-zero otherwise.
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

# USD-M: 30 s of four perpetuals (the pu chain; aggTrade is the trade stream, so the lake trades are aggTrade ids)
RLX_DATA_DIR=$(mktemp -d)
DAGSTER_HOME=$(mktemp -d)
perps=SUSHI-USDT-PERP,AKRO-USDT-PERP,CTK-USDT-PERP,KEEP-USDT-PERP
export RLX_DATA_DIR DAGSTER_HOME RLX_SYMBOLS=$perps RLX_PARTITION_START=2021-07-01 RLX_LAKE_MIN_HOURS=1 RLX_EXECUTOR=in_process
rlx-pipeline capture import ../shared/real-samples/cryptofeed/BINANCE_FUTURES.*
rlx-pipeline lake from-capture "$RLX_DATA_DIR"/capture/imported/*.jsonl.zst
for symbol in ${perps//,/ }; do
  dagster asset materialize -m rlx_pipeline.definitions --select '*' --partition "2021-07-22|$symbol"
  python - "$symbol" <<'PY'
import json, os, sys
from rlx_pipeline.layout import DataLayout
symbol = sys.argv[1]
report = json.loads((DataLayout(os.environ["RLX_DATA_DIR"]).report_dir("fidelity", "2021-07-22", symbol) / "report.json").read_text())
comps = {k: f"{v['matched']}/{v['total']}" for k, v in report["components"].items()}
print(f"real {symbol} 2021-07-22: fidelity {report['score']:.4%} ({report['trade_id_kind']})  {comps}")
assert report["score"] >= 0.999, report
PY
done
