#!/bin/sh
# Prints what goes over loopback when a server closes a connection whose
# request it has not read: with gen_tcp:close/1 (the server sends R and the
# client loses most of the reply) and with fin_close:close/1 (F after the
# last byte). Needs tcpdump and root. Used for the README's excerpts.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for how in native fin_close; do
    port=$([ "$how" = native ] && echo 45678 || echo 45679)
    tcpdump -i lo -n -U -w "$out/$how.pcap" "tcp port $port" 2>/dev/null &
    dump=$!
    sleep 1
    escript "$root/scripts/trace.escript" "$how" "$port"
    sleep 0.5
    kill "$dump"
    wait "$dump" 2>/dev/null || true
    tcpdump -n -r "$out/$how.pcap" 2>/dev/null | sed -E 's/^[0-9:.]+ //; s/, options \[[^]]*\]//'
    echo
done
