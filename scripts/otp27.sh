#!/usr/bin/env bash
# Runs every Common Test suite with Erlang/OTP 27 (Debian 13's packages) on
# this Debian 12 machine, in a chroot; `make test-otp27`. As root only.
#
# - The root: `debootstrap --variant=minbase trixie`, then OTP 27 and what
#   the suites call (curl, python3-requests, iproute2, tcpdump, gcc, ...),
#   from the Debian mirror the host's own apt sources name (the one this
#   machine is known to reach), or $FIN_CLOSE_OTP27_MIRROR.
#   Built once and kept in $FIN_CLOSE_OTP27_ROOT (default
#   /var/cache/fin_close/trixie, outside the clone) for later runs on this
#   machine: built in a temporary folder beside it and renamed only when
#   complete, with a stamp that lists what it holds; a root whose stamp
#   differs from this script's recipe is built anew.
# - meck: Debian 13 has no erlang-meck. The host's (Debian 12, meck 0.9.2,
#   installed by scripts/setup.sh) is copied in and recompiled there by
#   OTP 27's compiler from the debug_info its beam files carry. (The OTP 25
#   beam files do load and work on OTP 27 as they are; recompiling means no
#   code compiled by OTP 25 runs in the test.)
# - The NIF: built on the host with cargo (scripts/build_nif.sh); the chroot
#   has no Rust. rebar3 runs there with REBAR_CONFIG set to a copy of
#   rebar.config without its pre_hooks (the hook would call cargo): the
#   project's files are used as they are, and the `artifacts' check still
#   fails the run when priv/libfin_close_nif.so is missing.
# - The clone is bind-mounted read-only at /work/fin_close; only
#   _build/otp27 (REBAR_BASE_DIR: OTP 27's beam files, CT's logs in
#   _build/otp27/test/logs) is writable, so OTP 25's _build/default and the
#   working tree are left alone.
# - Mounts and processes: everything runs in its own mount and PID
#   namespaces (unshare). Every mount made here is invisible to the host and
#   gone when this script ends, however it ends, and so is every process
#   started in the chroot (the kernel kills a PID namespace's processes
#   with its first one).
# - The network: the suites run in a network namespace of their own, with
#   only loopback (up), so that a `make test` running meanwhile on the host
#   cannot move the kernel's RST counters they compare (TcpExt in
#   /proc/net/netstat is per namespace) nor clash with the netns cases'
#   fixed names; a fresh namespace has the host's TCP settings (checked:
#   every per-namespace net.ipv4/net.core sysctl is the same). The netns
#   cases make theirs inside it: `ip netns` keeps its files in the chroot's
#   /run/netns (a tmpfs here) and `ip netns exec` remounts /sys and makes /
#   a slave mount, so the chroot's root is made a mount point first (bound
#   onto itself). What needs the network is done before.
#
# Ends with "otp27: N passed, N failed, N skipped" (scripts/ct.sh's line)
# and fails when rebar3 ct fails. Extra arguments go to rebar3 ct, such as
# `scripts/otp27.sh --suite test/fin_close_SUITE`.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
root=${FIN_CLOSE_OTP27_ROOT:-/var/cache/fin_close/trixie}
suite=trixie
packages=$(echo erlang-nox erlang-dev erlang-common-test erlang-proper erlang-proper-dev rebar3 \
                curl python3-requests iproute2 tcpdump gcc libc6-dev procps)

if [ "$(id -u)" -ne 0 ]; then
    echo "otp27: needs root (debootstrap, chroot, mounts, network namespaces)" >&2
    exit 1
fi

# This script runs again in its namespaces, as their first process.
# unshare holds off INT and TERM while it waits, so this side passes them
# on: killing unshare kills that first process (--kill-child), and with it
# the rest.
if [ "${FIN_CLOSE_OTP27_NS:-}" != 1 ]; then
    export FIN_CLOSE_OTP27_NS=1
    unshare --mount --propagation private --pid --fork --kill-child "$0" "$@" &
    ns=$!
    trap 'kill -KILL "$ns" 2>/dev/null; wait "$ns" || :; exit 130' INT
    trap 'kill -KILL "$ns" 2>/dev/null; wait "$ns" || :; exit 143' TERM
    wait "$ns"
    exit $?
fi

meck=$(ls -d /usr/lib/erlang/lib/meck-* 2>/dev/null | tail -n 1)
if [ -z "$meck" ]; then
    echo "otp27: the host's erlang-meck is missing: run scripts/setup.sh as root" >&2
    exit 1
fi

# What the cached root holds; any change here builds it anew.
stamp="fin_close otp27 root, recipe 2
suite $suite
packages $packages
meck $(basename "$meck"), recompiled by OTP 27"

mounts=()
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount -R -l "${mounts[i]}" 2>/dev/null || true
    done
    mounts=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mount_in() { # mount_in DIR ARGS...: mount ARGS... on DIR, undone by cleanup
    local dir=$1
    shift
    mount "$@" "$dir"
    mounts+=("$dir")
}

# Mounts the chroot at $1 needs to run programs: its own /proc (this PID
# namespace), /sys, the host's /dev, a fresh /run and /tmp.
enter_mounts() {
    mount_in "$1/proc" -t proc proc
    mount_in "$1/sys" -t sysfs sysfs
    mount_in "$1/dev" --rbind /dev
    mount_in "$1/run" -t tmpfs -o mode=0755 tmpfs
    mount_in "$1/tmp" -t tmpfs -o mode=1777 tmpfs
    mount_in "$1/etc/resolv.conf" --bind /etc/resolv.conf
}

# What runs in the chroot starts from a clean environment: `chroot DIR
# "${clean_env[@]}" [VAR=VALUE...] COMMAND...`.
clean_env=(/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)

# The mirror the host's own apt sources (sources.list, deb822 or one-line
# files in sources.list.d) name for its own release, as apt reads them
# (without the release files, which a machine not yet updated lacks);
# empty when none does.
host_mirror() {
    local release
    release=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' 2>/dev/null |
        awk -v want="$release" '$1 == want && !found++ { sub(/\/$/, "", $2); print $2 }'
}

# Removes a folder left by an interrupted build (nothing is mounted there
# from the host: every mount of this script lives in its own namespace).
remove_tree() {
    [ -e "$1" ] || return 0
    if findmnt -rn -o TARGET | grep -q "^$1\(/\|$\)"; then
        echo "otp27: $1 has mounts, not removed" >&2
        return 1
    fi
    rm -rf --one-file-system "$1"
}

build_root() {
    local new="$root.new" mirror=${FIN_CLOSE_OTP27_MIRROR:-$(host_mirror)}
    if [ -z "$mirror" ]; then
        echo "otp27: the host's apt sources name no mirror for its release:" \
             "set FIN_CLOSE_OTP27_MIRROR to a Debian mirror" >&2
        return 1
    fi
    if ! command -v debootstrap >/dev/null 2>&1; then
        echo "otp27: installing debootstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    remove_tree "$new"
    echo "otp27: building a Debian 13 root in $root from $mirror (a few minutes, once)"
    debootstrap --variant=minbase "$suite" "$new" "$mirror" >"$new.log" 2>&1 ||
        { tail -n 20 "$new.log" >&2; echo "otp27: debootstrap failed (log: $new.log)" >&2; return 1; }
    rm -f "$new.log"
    # A file of its own, which each run binds the host's current one onto.
    rm -f "$new/etc/resolv.conf"
    cp -L /etc/resolv.conf "$new/etc/resolv.conf"
    echo "deb $mirror $suite main" >"$new/etc/apt/sources.list"
    # No service is started in the chroot by a package's scripts.
    printf '#!/bin/sh\nexit 101\n' >"$new/usr/sbin/policy-rc.d"
    chmod +x "$new/usr/sbin/policy-rc.d"
    mkdir -p "$new/work/fin_close" "$new/usr/lib/erlang/lib"
    cp -r "$meck" "$new/usr/lib/erlang/lib/"
    enter_mounts "$new"
    chroot "$new" "${clean_env[@]}" DEBIAN_FRONTEND=noninteractive ERL_CRASH_DUMP_SECONDS=0 sh -euc "
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $packages >/tmp/install.log 2>&1 ||
            { tail -n 30 /tmp/install.log; exit 1; }
        apt-get clean
        cd /usr/lib/erlang/lib/$(basename "$meck")/ebin
        erl -noshell -eval '
            [begin
                 {ok, {M, [{debug_info, {debug_info_v1, erl_abstract_code, {Forms, Opts}}}]}} =
                     beam_lib:chunks(B, [debug_info]),
                 {ok, M, Bin} = compile:forms(Forms, [binary, report_errors | Opts]),
                 ok = file:write_file(B, Bin)
             end || B <- filelib:wildcard(\"*.beam\")],
            halt().'
        erl -noshell -eval 'ok = application:load(meck), {module, meck} = code:ensure_loaded(meck),
                            \"27\" = erlang:system_info(otp_release), halt().'
    "
    cleanup
    printf '%s\n' "$stamp" >"$new/.fin_close-stamp"
    remove_tree "$root.old"
    [ ! -e "$root" ] || mv "$root" "$root.old"
    mv "$new" "$root"
    remove_tree "$root.old"
}

# The NIF, built on the host (a no-op when cargo finds it up to date).
(cd "$repo" && sh scripts/build_nif.sh)

mkdir -p "$(dirname "$root")"
# One run at a time on this machine: the root is built, replaced and used
# under this lock (and the suites' network namespace has a fixed name).
exec 9>"$root.lock"
if ! flock -n 9; then
    echo "otp27: waiting for another run (lock $root.lock)"
    flock 9
fi

if [ "$(cat "$root/.fin_close-stamp" 2>/dev/null)" != "$stamp" ]; then
    t0=$(date +%s)
    build_root
    echo "otp27: root built in $(($(date +%s) - t0)) s"
else
    echo "otp27: using the cached root $root"
fi

# The chroot's root a mount point (for `ip netns exec`), then what it needs,
# then the clone read-only with its _build/otp27 writable.
mkdir -p "$repo/_build/otp27"
mount_in "$root" --bind "$root"
enter_mounts "$root"
mount_in "$root/work/fin_close" --bind "$repo"
mount -o remount,bind,ro "$root/work/fin_close"
mount_in "$root/work/fin_close/_build/otp27" --bind "$repo/_build/otp27"

# rebar.config without the pre_hooks (cargo); written by OTP 27's erl so
# that any term of the project's file comes through.
chroot "$root" "${clean_env[@]}" ERL_CRASH_DUMP_SECONDS=0 erl -noshell -eval '
    {ok, Terms} = file:consult("/work/fin_close/rebar.config"),
    Out = [io_lib:format("~tp.~n", [T]) || T <- Terms, not is_tuple(T) orelse element(1, T) =/= pre_hooks],
    ok = file:write_file("/work/fin_close/_build/otp27/rebar.config", Out),
    halt().'

# The Cowboy of the cowboy group (Debian 13's rabbitmq-server unpacked into
# the root's /var/cache/fin_close on first use), fetched now while there is
# a network; the suite asks for it again. The suites get neither the lock's
# descriptor (9) nor the host's network.
chroot "$root" "${clean_env[@]}" sh /work/fin_close/scripts/cowboy.sh >/dev/null 2>&1 9>&- ||
    echo "otp27: scripts/cowboy.sh failed (no Cowboy for the cowboy group)" >&2

set +e
unshare --net sh -c 'ip link set lo up && exec "$@"' sh \
chroot "$root" "${clean_env[@]}" HOME=/tmp/home TERM=dumb \
    REBAR_BASE_DIR=/work/fin_close/_build/otp27 \
    REBAR_CONFIG=/work/fin_close/_build/otp27/rebar.config \
    bash -c 'cd /work/fin_close && mkdir -p "$HOME" &&
             echo "otp27: OTP $(cat /usr/lib/erlang/releases/*/OTP_VERSION), $(rebar3 version)" &&
             bash scripts/ct.sh "$@"' otp27 "$@" 9>&- |
    sed -u 's/^ct: \([0-9]* passed, \)/otp27: \1/'
status=${PIPESTATUS[0]}
set -e
echo "otp27: logs in $repo/_build/otp27/test/logs"
exit "$status"
