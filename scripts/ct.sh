#!/usr/bin/env bash
# Runs the Common Test suites and ends with rebar3's verdict in the plain
# "N passed, N failed" form that any CI reads.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# As root, in a network namespace of its own with only loopback: the
# kernel's RST counters that the suites compare (TcpExt in
# /proc/net/netstat) are per namespace, so nothing else running on the
# machine can move them. What needs the network is fetched first (the
# Cowboy of the cowboy group, cached).
run=(rebar3 ct --readable true "$@")
if [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null 2>&1 && unshare --net true 2>/dev/null; then
    sh "$(dirname "$0")/cowboy.sh" >/dev/null 2>&1 || echo "ct: scripts/cowboy.sh failed" >&2
    run=(unshare --net sh -c 'ip link set lo up && exec "$@"' sh "${run[@]}")
fi
"${run[@]}" 2>&1 | tee "$log"
status=$?
passed=$(sed -n 's/.*All \([0-9]*\) tests passed.*/\1/p; s/.*Passed \([0-9]*\) tests.*/\1/p' "$log" | tail -n 1)
failed=$(sed -n 's/.*Failed \([0-9]*\) tests.*/\1/p' "$log" | tail -n 1)
skipped=$(sed -n 's/.*Skipped \([0-9]*\) .*/\1/p' "$log" | tail -n 1)
# rebar3 ends a run with 0 where a suite could not be loaded
# (error_in_suite); its cases, like any skipped automatically ("Skipped N
# (user, auto)", after a crash in an init_per_* callback), did not run, so
# the run fails.
auto=$(sed -n 's/.*Skipped [0-9]* ([0-9]*, \([0-9]*\)).*/\1/p' "$log" | tail -n 1)
if grep -q "error_in_suite" "$log"; then
    echo "ct: a suite could not be loaded (error_in_suite above)" >&2
    status=1
fi
if [ "${auto:-0}" -ne 0 ]; then
    echo "ct: ${auto} cases skipped automatically: they did not run" >&2
    status=1
fi
echo "ct: ${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit $status
