#!/bin/sh
# Prints a directory holding the ebin directories of a real Cowboy, Cowlib
# and Ranch, for the Cowboy tests: those compiled inside Debian 12's
# rabbitmq-server package, unpacked (never installed, never started) into a
# cache on first use. Nothing of it is committed.
set -eu
cache=${FIN_CLOSE_CACHE:-/var/cache/fin_close}
mkdir -p "$cache" 2>/dev/null || cache="$(cd "$(dirname "$0")/.." && pwd)/_build/fin_close_cache"
plugins="$cache/cowboy"
if ! ls -d "$plugins"/cowboy-*/ebin >/dev/null 2>&1; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && { apt-get download rabbitmq-server >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get download rabbitmq-server >/dev/null 2>&1; }; })
    dpkg -x "$work"/rabbitmq-server_*.deb "$work/root"
    mkdir -p "$plugins.tmp"
    cp -r "$work"/root/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/cowboy-* \
          "$work"/root/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/cowlib-* \
          "$work"/root/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/ranch-* "$plugins.tmp"
    rm -rf "$plugins"
    mv "$plugins.tmp" "$plugins"
fi
echo "$plugins"
