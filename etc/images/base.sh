#!/bin/sh
# base.sh OUT_TAR WORKDIR: writes the root file system of the
# runtime-sandbox-base image to OUT_TAR: Debian minbase with python3 and
# ca-certificates, made by mmdebstrap from the mirror this machine's apt
# uses (the only network it may have). Run by runtime-sandbox-builder(8).
#
# SANDPOOL_DEBIAN_SUITE (default bookworm) and SANDPOOL_DEBIAN_MIRROR
# (default: read from /etc/apt/sources.list.d/*.sources or
# /etc/apt/sources.list) override the defaults.

set -eu

if [ $# -ne 2 ]; then
	echo "usage: base.sh OUT_TAR WORKDIR" >&2
	exit 2
fi
out=$1
work=$2
suite=${SANDPOOL_DEBIAN_SUITE:-bookworm}

if ! command -v mmdebstrap >/dev/null 2>&1; then
	echo "base.sh: mmdebstrap is not installed: apt-get install mmdebstrap" >&2
	exit 1
fi

# Every URI apt uses here, one a line: URIs: of deb822 .sources files,
# then "deb" lines of sources.list files.
apt_uris() {
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
			print $i
		}' "$f"
	done
}

mirror=${SANDPOOL_DEBIAN_MIRROR:-}
security=
for uri in $(apt_uris); do
	case $uri in
	*debian-security*) [ -n "$security" ] || security=$uri ;;
	*/debian | */debian/) [ -n "$mirror" ] || mirror=$uri ;;
	esac
done
if [ -z "$mirror" ]; then
	echo "base.sh: cannot find a Debian mirror in apt's sources;" \
	    "set SANDPOOL_DEBIAN_MIRROR" >&2
	exit 1
fi

set -- "deb $mirror $suite main" "deb $mirror $suite-updates main"
if [ -n "$security" ]; then
	set -- "$@" "deb $security $suite-security main"
fi
# mmdebstrap's scratch directory goes under the builder's temporary one.
TMPDIR=$work
export TMPDIR
chmod 0755 "$work"
quiet=
if [ "${SANDPOOL_BUILDER_QUIET:-0}" = 1 ]; then
	quiet=--quiet
else
	echo "base.sh: mmdebstrap $suite from $mirror${security:+ and $security}"
fi

# Snapshot mirrors serve Release files whose Valid-Until has passed; docs,
# man pages and translations are left out of the image.
# shellcheck disable=SC2016 # "$1" is expanded by mmdebstrap's hook shell
mmdebstrap $quiet --variant=minbase \
    --include=python3,ca-certificates \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='mkdir -p "$1/workspace" && chmod 0755 "$1/workspace"' \
    "$suite" "$out" "$@"
