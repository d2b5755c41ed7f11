#!/usr/bin/env bash
# Runs the Common Test suites and ends with rebar3's verdict in the plain
# "N passed, N failed" form that any CI reads.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rebar3 ct --readable true "$@" 2>&1 | tee "$log"
status=$?
passed=$(sed -n 's/.*All \([0-9]*\) tests passed.*/\1/p; s/.*Passed \([0-9]*\) tests.*/\1/p' "$log" | tail -n 1)
failed=$(sed -n 's/.*Failed \([0-9]*\) tests.*/\1/p' "$log" | tail -n 1)
skipped=$(sed -n 's/.*Skipped \([0-9]*\) .*/\1/p' "$log" | tail -n 1)
echo "ct: ${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit $status
