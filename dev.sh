#!/usr/bin/env bash
# dev.sh: the two commands of the README, on Debian 12.
#
#   ./dev.sh serve [ARGS]  installs what is missing, builds, builds the base
#                          image if it is missing, starts dockerd if it does
#                          not answer, and runs ./runtime-sandbox-server ARGS
#                          with a warm pool of one base sandbox.
#   ./dev.sh test          installs what is missing, builds with -Werror,
#                          builds the busybox test image, runs
#                          `make check` against the real dockerd, then
#                          `make fuzz-smoke` (each libFuzzer target for
#                          FUZZ_SECONDS, default 15).
#
# dockerd is started only when /var/run/docker.sock does not answer, with its
# log in ./dockerd.log, and then stopped (by its pid) when this script ends.
set -euo pipefail

top=$(cd "$(dirname "$0")" && pwd)
cd "$top"

PACKAGES=(build-essential autoconf automake libtool pkg-config libevent-dev
	libcurl4-openssl-dev libyajl-dev libhiredis-dev libssh2-1-dev
	docker.io redis-server mmdebstrap busybox-static python3 curl
	ca-certificates iptables clang-format git python3-ipython clang
	libclang-rt-14-dev haproxy)
DOCKER_SOCK=/var/run/docker.sock
dockerd_pid=
dockerd_log=$top/dockerd.log
policy_rc=

say() { printf 'dev.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Runs a command as root (directly, or through sudo).
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "root is needed for: $*"
	fi
}

# Installs the packages of PACKAGES that are not installed yet.
install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = \
			"install ok installed" ] || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing ${missing[*]}"
	# Keep the packages' services (docker, containerd, redis) from starting:
	# this script starts what it needs and stops what it started.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		policy_rc=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\n# dev.sh: no service starts\nexit 101\n' |
			as_root tee "$policy_rc" >/dev/null
		as_root chmod 755 "$policy_rc"
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}"
	remove_policy_rc
}

remove_policy_rc() {
	if [ -n "$policy_rc" ]; then
		as_root rm -f "$policy_rc"
		policy_rc=
	fi
}

docker_answers() {
	[ "$(curl -s -m 5 --unix-socket "$DOCKER_SOCK" http://x/_ping 2>/dev/null)" = OK ]
}

# Starts dockerd in the background if the socket does not answer. It runs
# in its own session, so that a ^C in the terminal reaches the tests (which
# then clean up through dockerd) and not dockerd.
start_dockerd() {
	docker_answers && return 0
	command -v dockerd >/dev/null 2>&1 || die "dockerd is not installed"
	[ "$(id -u)" -eq 0 ] || die "dockerd does not answer on $DOCKER_SOCK" \
		"and only root can start it"
	say "starting dockerd (log in $dockerd_log)"
	setsid dockerd >"$dockerd_log" 2>&1 </dev/null &
	dockerd_pid=$!
}

# Waits up to 60 s for the socket to answer.
wait_dockerd() {
	for _ in $(seq 1 120); do
		docker_answers && return 0
		if [ -n "$dockerd_pid" ] && ! kill -0 "$dockerd_pid" 2>/dev/null; then
			tail -n 40 "$dockerd_log" >&2 || true
			dockerd_pid=
			die "dockerd exited; see $dockerd_log"
		fi
		sleep 0.5
	done
	[ -n "$dockerd_pid" ] && tail -n 40 "$dockerd_log" >&2
	die "dockerd does not answer on $DOCKER_SOCK after 60 s"
}

# Stops dockerd if this script started it: SIGTERM, then SIGKILL after 30 s.
stop_dockerd() {
	[ -n "$dockerd_pid" ] || return 0
	say "stopping dockerd (pid $dockerd_pid)"
	kill -TERM "$dockerd_pid" 2>/dev/null || true
	for _ in $(seq 1 60); do
		kill -0 "$dockerd_pid" 2>/dev/null || break
		sleep 0.5
	done
	kill -KILL "$dockerd_pid" 2>/dev/null || true
	wait "$dockerd_pid" 2>/dev/null || true
	dockerd_pid=
}

on_exit() {
	local rc=$?
	remove_policy_rc
	stop_dockerd
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

image_exists() {
	[ "$(curl -s -m 10 -o /dev/null -w '%{http_code}' \
		--unix-socket "$DOCKER_SOCK" "http://x/v1.41/images/$1/json")" = 200 ]
}

# Exports KEY=VALUE unless the environment or ./.env already sets KEY (the
# server reads ./.env without overriding the environment).
default_env() {
	local key=$1 value=$2
	if printenv "$key" >/dev/null; then
		return 0
	fi
	if [ -f .env ] && grep -qiE "^[[:space:]]*(export[[:space:]]+)?${key}[[:space:]]*=" .env; then
		return 0
	fi
	export "$key=$value"
}

# Prints the log of every test that failed.
print_failed_logs() {
	local trs
	find . -name '*.trs' -newer config.status -print 2>/dev/null | sort |
	while read -r trs; do
		grep -qE '^:(global-)?test-result: (FAIL|ERROR|XPASS)' "$trs" ||
			continue
		printf '\n===== %s =====\n' "${trs%.trs}.log"
		cat "${trs%.trs}.log" 2>/dev/null || true
	done
	if [ -n "$dockerd_pid" ]; then
		printf '\n===== last lines of %s =====\n' "$dockerd_log"
		tail -n 30 "$dockerd_log" || true
	fi
}

cmd_test() {
	local rc=0
	install_packages
	start_dockerd		# starts in the background while we build
	./autogen.sh
	./configure --enable-werror --enable-fuzzing
	make -j2
	wait_dockerd
	./runtime-sandbox-builder busybox
	export SANDPOOL_TEST_DOCKER=1
	make -j2 check || rc=$?
	if [ "$rc" -ne 0 ]; then
		print_failed_logs
		say "make check failed (status $rc)"
	fi
	if ! make -j2 fuzz-smoke FUZZ_SECONDS="${FUZZ_SECONDS:-15}"; then
		say "make fuzz-smoke found something (see tests/fuzz/work/)"
		[ "$rc" -ne 0 ] || rc=1
	fi
	return "$rc"
}

cmd_serve() {
	local image spid rc=0
	install_packages
	start_dockerd
	if [ ! -f Makefile ]; then
		./autogen.sh
		./configure
	fi
	make -j2
	wait_dockerd
	image="${RUNTIME_SANDBOX_REGISTRY:+$RUNTIME_SANDBOX_REGISTRY/}"
	image+="${RUNTIME_SANDBOX_IMAGE_NAMESPACE:-agentscope}/runtime-sandbox-base"
	image+=":${RUNTIME_SANDBOX_IMAGE_TAG:-latest}"
	if ! image_exists "$image"; then
		say "building $image"
		./runtime-sandbox-builder base
	fi
	default_env POOL_SIZE 1
	default_env SANDPOOL_AGENT "$top/sandpool-agent"
	if [ "$(id -u)" -ne 0 ]; then
		mkdir -p "$top/run"
		default_env SANDPOOL_RUN_DIR "$top/run"
	fi
	if [ -z "$dockerd_pid" ]; then
		trap - EXIT INT TERM
		exec ./runtime-sandbox-server "$@"
	fi
	# dockerd is ours: run the server as a child, pass ^C/SIGTERM on, and
	# stop dockerd once the server has exited.
	./runtime-sandbox-server "$@" &
	spid=$!
	trap 'kill -TERM "$spid" 2>/dev/null || true' INT TERM
	while kill -0 "$spid" 2>/dev/null; do
		rc=0
		wait "$spid" || rc=$?
	done
	return "$rc"
}

case "${1:-}" in
serve)
	shift
	cmd_serve "$@"
	;;
test)
	shift
	[ $# -eq 0 ] || die "usage: $0 test"
	cmd_test
	;;
*)
	echo "usage: $0 serve [runtime-sandbox-server arguments] | test" >&2
	exit 2
	;;
esac
