#!/usr/bin/env bash
# Repeat the tests that kill things (SIGKILL of a worker mid-job, SIGKILL of a worker holding a
# claimed batch and unrecorded outcomes, SIGTERM with jobs in flight,
# a Redis restart without persistence, a poison job) N times, default 20, and report how many
# runs passed. Each test asserts that every job reached a terminal status exactly once, so a
# failing run is a lost or doubly-finished job. `make soak` (SOAK_RUNS=20).
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
selection="sigkill or sigterm or redis_restart or poison"
passed=0
log=$(mktemp -d)/soak.log
for i in $(seq 1 "$runs"); do
  if .venv/bin/pytest -q -p no:cacheprovider tests/e2e/test_recovery.py -k "$selection" >>"$log" 2>&1; then
    passed=$((passed + 1)); echo "run $i/$runs: pass"
  else
    echo "run $i/$runs: FAIL (details in $log)"
  fi
done
echo "kill tests: $passed of $runs runs passed (each run: 6 scenarios; log: $log)"
[ "$passed" -eq "$runs" ]
