#!/usr/bin/env bash
# Installs QuickFIX's own example programs, executor (FIX 4.0-5.0) and ordermatch (FIX 4.2), as
# the FIX counterparties of the test suite and the FIX benchmark. Debian's libquickfix-doc ships
# them prebuilt but gzipped; they need libquickfix17 at run time. Idempotent.
#
#   scripts/install-fix-peers.sh [DEST]      # DEST defaults to .tools/fix-peers
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.tools/fix-peers}"
examples=/usr/share/doc/libquickfix-doc/examples
executor_gz="$examples/executor/C++/.libs/executor.gz"
ordermatch_gz="$examples/ordermatch/.libs/ordermatch.gz"

if [[ ! -f "$executor_gz" || ! -f "$ordermatch_gz" ]] || ! dpkg -s libquickfix17 >/dev/null 2>&1; then
  if [[ "$(id -u)" != 0 ]]; then
    echo "install-fix-peers: libquickfix-doc/libquickfix17 missing and not root: run" >&2
    echo "  apt-get install libquickfix17 libquickfix-doc" >&2
    exit 1
  fi
  echo "install-fix-peers: apt-get install libquickfix17 libquickfix-doc"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q libquickfix17 libquickfix-doc >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q libquickfix17 libquickfix-doc >/dev/null
  }
fi

mkdir -p "$dest"
for pair in "executor:$executor_gz" "ordermatch:$ordermatch_gz"; do
  name="${pair%%:*}"
  src="${pair#*:}"
  if [[ ! -x "$dest/$name" || "$src" -nt "$dest/$name" ]]; then
    gunzip -c "$src" >"$dest/$name.tmp"
    chmod +x "$dest/$name.tmp"
    mv "$dest/$name.tmp" "$dest/$name"
  fi
done
# The tests run the peers in a network namespace of their own: they need unshare and ip.
for tool in unshare ip; do
  command -v "$tool" >/dev/null || { echo "install-fix-peers: $tool not found" >&2; exit 1; }
done
echo "install-fix-peers: $dest/executor $dest/ordermatch ready"
