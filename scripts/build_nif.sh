#!/bin/sh
# Builds the NIF with cargo and puts it where fin_close_nif loads it from:
# priv/ of this application (rebar3 links _build/default/lib/fin_close/priv
# to it). Runs from the application's own directory, also as a dependency.
set -eu
PATH="$HOME/.cargo/bin:$PATH"
export PATH
# FIN_CLOSE_NIF_FEATURES adds cargo features: the Makefile sets
# `diagnostics` for this project's own tests and benchmark; a user's build
# has none.
cargo build --release --quiet --features "nif${FIN_CLOSE_NIF_FEATURES:+,$FIN_CLOSE_NIF_FEATURES}" \
    --manifest-path native/Cargo.toml
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path native/Cargo.toml |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
mkdir -p priv
# Copy to a temporary name and rename: a node that has the old library
# loaded keeps its mapping intact.
cp "$target_dir/release/libfin_close_nif.so" priv/.libfin_close_nif.so.tmp
mv priv/.libfin_close_nif.so.tmp priv/libfin_close_nif.so
# Say so when this build's features differ from the last one's (make and a
# plain rebar3 compile in one checkout switch `diagnostics' on and off).
features="nif${FIN_CLOSE_NIF_FEATURES:+,$FIN_CLOSE_NIF_FEATURES}"
if [ -f priv/.features ] && [ "$(cat priv/.features)" != "$features" ]; then
    echo "fin_close: NIF built with features $features (was $(cat priv/.features))" >&2
fi
echo "$features" >priv/.features
