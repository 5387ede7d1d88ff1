#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tier (tests/browser): Playwright drives it through
# executable_path=/usr/bin/chromium. Never `playwright install`: its browser downloads are not
# reachable here. Idempotent: nothing is done when /usr/bin/chromium already runs.
#
#   scripts/install-browser.sh
set -euo pipefail
cd "$(dirname "$0")/.."
chromium=/usr/bin/chromium

if [[ -x "$chromium" ]] && "$chromium" --version >/dev/null 2>&1; then
  echo "install-browser: $("$chromium" --version 2>/dev/null) ready"
  exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "install-browser: $chromium missing and not root: run" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends chromium" >&2
  exit 1
fi
echo "install-browser: apt-get install chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends chromium >/dev/null
"$chromium" --version >/dev/null 2>&1 || { echo "install-browser: $chromium does not run" >&2; exit 1; }
echo "install-browser: $("$chromium" --version 2>/dev/null) ready"
