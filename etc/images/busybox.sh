#!/bin/sh
# busybox.sh OUT_TAR WORKDIR: writes the root file system of the
# sandpool/busybox test image to OUT_TAR: the host's static busybox as
# /bin/busybox with a symlink per applet, /workspace, /tmp (1777) and an
# /etc/passwd with root. Run by runtime-sandbox-builder(8); needs the
# busybox-static package (or SANDPOOL_BUSYBOX naming a static busybox).

set -eu

if [ $# -ne 2 ]; then
	echo "usage: busybox.sh OUT_TAR WORKDIR" >&2
	exit 2
fi
out=$1
work=$2
bb=${SANDPOOL_BUSYBOX:-/bin/busybox}

if [ ! -x "$bb" ]; then
	echo "busybox.sh: $bb not found: apt-get install busybox-static" >&2
	exit 1
fi
# ldd succeeds only for a dynamically linked program.
if command -v ldd >/dev/null 2>&1 && ldd "$bb" >/dev/null 2>&1; then
	echo "busybox.sh: $bb is dynamically linked and would not run in the" \
	    "image: apt-get install busybox-static" >&2
	exit 1
fi

root=$work/rootfs
rm -rf "$root"
mkdir -p "$root"
for d in bin sbin usr/bin usr/sbin etc root tmp var/tmp workspace \
    proc sys dev run; do
	mkdir -p "$root/$d"
done
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 0700 "$root/root"
cp "$bb" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"

# One symlink per applet, where busybox says it belongs (--list-full), or
# all in /bin with an older busybox.
if "$bb" --list-full >/dev/null 2>&1; then
	"$bb" --list-full
else
	"$bb" --list | sed 's|^|bin/|'
fi | while read -r path; do
	case $path in
	'' | bin/busybox) continue ;;
	esac
	if [ ! -e "$root/$path" ] && [ ! -L "$root/$path" ]; then
		mkdir -p "$root/$(dirname "$path")"
		ln -s /bin/busybox "$root/$path"
	fi
done
if [ ! -e "$root/bin/sh" ]; then
	ln -s /bin/busybox "$root/bin/sh"
fi

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
chmod 0644 "$root/etc/passwd" "$root/etc/group"

tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$out" .
