#!/bin/sh
# Installs what fin_close needs to build and test on Debian 12, when it is
# missing: Erlang/OTP (with erlang-dev, Common Test, PropEr, meck), rebar3,
# tcpdump, Elixir (the Mix consumer test and the Elixir web servers' suite),
# curl, Python's requests and nghttp (real HTTP clients of the suites and
# make bench) from
# Debian's packages. As root it installs them; otherwise it
# says exactly what to run. Rust (cargo) must already be there.
set -eu

packages="erlang-nox erlang-dev erlang-common-test erlang-proper erlang-proper-dev erlang-meck rebar3 tcpdump elixir iproute2 curl python3-requests nghttp2-client"
# `setup.sh bench` also installs gnuplot, which draws the benchmark's plot.
if [ "${1:-}" = bench ]; then
    packages="$packages gnuplot-nox"
fi

missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "setup: installing$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
        echo "setup: missing Debian packages:$missing" >&2
        echo "setup: run as root:  apt-get update && apt-get install -y$missing" >&2
        exit 1
    fi
fi

if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    echo "setup: cargo not found: install Rust (rustup, or Debian's cargo)" >&2
    exit 1
fi
