#!/bin/sh
# Builds test/elixir_app offline: Bandit, ThousandIsland, Plug, Plug.Cowboy
# and their dependencies from the source archives in ../shared/elixir-deps
# (test fixtures, unpacked into _build/elixir_app; nothing of them is
# committed), Debian's Cowboy (scripts/cowboy.sh), and fin_close as a path
# dependency. Prints the build directory (its lib/*/ebin), or fails.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
archives=${FIN_CLOSE_ELIXIR_DEPS:-$root/../shared/elixir-deps}
out=$root/_build/elixir_app
mkdir -p "$out"
stamp=$(cat "$archives"/*.tar.gz "$root/scripts/elixir_deps.py" | sha256sum | cut -c1-16)
if [ "$(cat "$out/deps.stamp" 2>/dev/null)" != "$stamp" ]; then
    python3 "$root/scripts/elixir_deps.py" "$archives" "$out/src"
    rm -rf "$out/build"
    echo "$stamp" > "$out/deps.stamp"
fi
FIN_CLOSE_ELIXIR_SRC="$out/src"
FIN_CLOSE_COWBOY=$(sh "$root/scripts/cowboy.sh")
MIX_BUILD_PATH="$out/build"
MIX_DEPS_PATH="$out/mix_deps"
MIX_ENV=prod
HEX_OFFLINE=1
MIX_REBAR3=$(command -v rebar3)
export FIN_CLOSE_ELIXIR_SRC FIN_CLOSE_COWBOY MIX_BUILD_PATH MIX_DEPS_PATH MIX_ENV HEX_OFFLINE MIX_REBAR3
cd "$root/test/elixir_app"
mix deps.compile >&2
mix compile >&2
echo "$out/build"
