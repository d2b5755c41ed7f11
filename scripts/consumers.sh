#!/bin/sh
# Builds, from scratch in a temporary folder, the two consumer projects in
# test/consumers: a rebar3 application with fin_close in _checkouts, and a
# Mix project with fin_close as a path dependency (built by Debian's
# rebar3, without hex). Each one runs a real connection through
# fin_close:close/1 and fin_close:i(), and fails unless the client got the
# whole reply and a FIN.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A clean copy of fin_close: its tracked files only, as a user's checkout
# has them (no priv/*.so, no _build), so the consumers really build it.
# Cargo shares this checkout's target folder, which only saves time.
root="$work/fin_close"
mkdir "$root"
(cd "$repo" && git ls-files -z | xargs -0 cp -d --parents -t "$root")
export CARGO_TARGET_DIR="$repo/target"
# As a user builds it: no diagnostics.
unset FIN_CLOSE_NIF_FEATURES

echo "consumers: rebar3 project with _checkouts/fin_close"
cp -r "$root/test/consumers/rebar3_app" "$work/rebar3_app"
mkdir "$work/rebar3_app/_checkouts"
ln -s "$root" "$work/rebar3_app/_checkouts/fin_close"
(
    cd "$work/rebar3_app"
    rebar3 compile
    erl -noshell -pa $(rebar3 path) -eval 'consumer:main()'
)

echo "consumers: Mix project with {:fin_close, path: ...}"
cp -r "$root/test/consumers/mix_app" "$work/mix_app"
(
    cd "$work/mix_app"
    export FIN_CLOSE_PATH="$root" MIX_REBAR3="$(command -v rebar3)" MIX_ENV=dev
    mix compile
    mix run -e 'Consumer.main()'
)
