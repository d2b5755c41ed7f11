# fin_close: every entry point sets up what is missing first (see
# scripts/setup.sh), so on a fresh Debian 12 machine `make demo` and
# `make test` are all there is to run.
SHELL := /bin/sh
export PATH := $(HOME)/.cargo/bin:$(PATH)
# The NIF of this project's own builds, tests and benchmark measures how long
# its calls hold their scheduler (cargo feature `diagnostics`); a user's
# build, and the consumer projects of `make test`, have none of it.
export FIN_CLOSE_NIF_FEATURES := diagnostics

.PHONY: setup build demo test lint test-rust test-erlang test-consumers test-otp27 trace table bench clean

setup:
	@scripts/setup.sh

build: setup
	rebar3 compile

demo: build
	escript scripts/demo.escript

# Every alternative measured side by side (see bench/bench.escript); writes
# bench/results.md and bench/results.png. About 4 minutes.
bench: build
	@scripts/setup.sh bench
	cargo build --release --quiet --examples
	escript bench/bench.escript

# fin_close:i() on a node with one socket of each kind.
table: build
	escript scripts/table.escript

# The wire, with gen_tcp:close/1 and with fin_close:close/1 (tcpdump).
trace: build
	scripts/trace.sh

test: build lint test-rust test-erlang test-consumers

# Formatting, lints and docs of both halves; part of `make test`.
lint: build
	cargo fmt --check
	cargo clippy --quiet --all-targets -- -D warnings
	cargo clippy --quiet --features nif -- -D warnings
	cargo clippy --quiet --all-targets --features nif,diagnostics -- -D warnings
	rebar3 xref
	rebar3 dialyzer
	rebar3 edoc

test-rust:
	cargo test --quiet --features diagnostics

test-erlang: build
	scripts/ct.sh

# The README's "Use" steps run as written in fresh rebar3 and Mix projects,
# with releases (see doc/development.md).
test-consumers: build
	scripts/consumers.sh

# Every Common Test suite again with OTP 27, in a Debian 13 chroot built
# once and cached in /var/cache/fin_close/trixie (see scripts/otp27.sh).
# As root; the NIF is built here, on the host.
test-otp27: setup
	scripts/otp27.sh

# What the build made, nothing tracked (priv/ itself stays: see .gitignore).
clean:
	rm -rf _build target logs priv/*.so priv/.features
