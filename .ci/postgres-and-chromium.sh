#!/usr/bin/env bash
# System packages for the operations tests: PostgreSQL (the production profile's storage) and Debian's chromium
# (the browser test, driven by Playwright without a browser download). Installs with apt when root or passwordless
# sudo is available; otherwise does nothing and those tests skip. The tests start their own servers on 127.0.0.1.
set -uo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

need=()
if ! have pg_ctl && [ -z "$(pg_bin)" ]; then need+=(postgresql); fi
if ! have chromium && ! have chromium-browser; then need+=(chromium); fi
if [ ${#need[@]} -eq 0 ]; then echo "postgresql and chromium already present"; exit 0; fi

if [ "$(id -u)" -eq 0 ]; then SUDO=""
elif have sudo && sudo -n true 2>/dev/null; then SUDO="sudo -n"
else echo "not root and no passwordless sudo: skipping ${need[*]} (their tests will skip)"; exit 0; fi
if ! have apt-get; then echo "no apt-get: skipping ${need[*]} (their tests will skip)"; exit 0; fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null || echo "warning: apt-get update failed"
# no-install-recommends keeps it small; the Debian postgresql package starts no cluster we use.
if ! $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; then
  echo "warning: apt-get install ${need[*]} failed; those tests will skip"
fi
echo "pg_ctl: $(command -v pg_ctl || pg_bin)  chromium: $(command -v chromium || command -v chromium-browser || echo none)"
exit 0
