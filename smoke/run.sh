#!/usr/bin/env bash
# Runs every hermetic end-to-end flow under smoke/flows/ against the release
# binary. Each flow gets its own temporary HOME and HYP_HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
flows=(smoke/flows/*.sh)
passed=0
failed=0
for flow in "${flows[@]}"; do
  name=$(basename "$flow" .sh)
  if bash "$flow"; then
    echo "smoke $name: ok"
    passed=$((passed + 1))
  else
    echo "smoke $name: FAILED"
    failed=$((failed + 1))
  fi
done
echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
