#!/usr/bin/env bash
# make check-arm64: the device half of emoedge on arm64 Debian bookworm, before a board is at hand.
#
# Builds an arm64 bookworm root with debootstrap (--foreign, second stage under qemu-user via
# binfmt), installs this checkout there the way the README tells a Raspberry Pi owner to
# (`python3 -m edge.install`: venv with system site packages, pip install '.[edge]', config,
# unit, enable; a second run must change nothing), then runs
# scripts/arm64_smoke.py inside it: one face detection + one inference of the bundled default
# model on the bundled sample, and one MQTT publish to a Mosquitto broker on the host's
# loopback, which a subscriber on the host must receive.
#
# Proves: the aarch64 wheels of every `edge` dependency resolve and import on Debian's
# Python 3.11, the package data (models, templates, unit) ships, the installer and the unit
# work in a real Debian root, and inference + MQTT give the same kind of answer as on x86.
# Does NOT prove (only a real board can): speed (qemu is 5-20x slower and another CPU),
# camera and microphone drivers (libcamera/picamera2, V4L2, ALSA), the systemd sandbox at
# run time (no systemd runs in a chroot), Jetson's CUDA/TensorRT.
#
# Environment: ARM64_MODEL (an exported ONNX artifact folder to run instead of the bundled
# default model), ARM64_BUILD (default /var/tmp/emoedge-arm64, where the root is cached between
# runs; outside the checkout on purpose: while this runs the root has /proc and /sys mounted,
# and tools that walk the source tree, like setuptools or grep -r, must not wander into them),
# DEBIAN_MIRROR (default http://deb.debian.org/debian). Needs root and the apt packages
# debootstrap qemu-user-static binfmt-support mosquitto mosquitto-clients. Takes minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
BUILD=${ARM64_BUILD:-/var/tmp/emoedge-arm64}
ROOTFS=$BUILD/rootfs
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
VENV=/opt/emoedge/venv
# What a Raspberry Pi OS install has from apt (python3-picamera2 brings numpy; it is not in
# Debian), plus systemd for systemctl and systemd-analyze.
ROOT_PACKAGES=python3,python3-venv,python3-numpy,python3-pyaudio,ca-certificates,systemd

say() { printf '\n== %s\n' "$*"; }
die() { printf 'check-arm64: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts): sudo make check-arm64"
for tool in debootstrap qemu-aarch64-static update-binfmts mosquitto mosquitto_sub git; do
	command -v "$tool" >/dev/null ||
		die "$tool not found: apt-get install debootstrap qemu-user-static binfmt-support mosquitto mosquitto-clients git"
done

say "binfmt: run aarch64 binaries through qemu-aarch64-static"
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
	mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
		die "cannot mount binfmt_misc (an unprivileged container?): register qemu-aarch64 on the host"
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 ||
	die "cannot register the qemu-aarch64 binfmt handler"
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "qemu-aarch64 binfmt handler is disabled"

if [ ! -e "$ROOTFS/.bootstrapped" ]; then
	say "debootstrap arm64 bookworm into $ROOTFS (first stage on the host)"
	rm -rf "$ROOTFS"
	mkdir -p "$ROOTFS"
	debootstrap --arch=arm64 --foreign --variant=minbase \
		--include="$ROOT_PACKAGES" \
		bookworm "$ROOTFS" "$MIRROR"
	install -m 0755 "$(command -v qemu-aarch64-static)" "$ROOTFS/usr/bin/"
	say "debootstrap second stage (aarch64 binaries under qemu)"
	chroot "$ROOTFS" /debootstrap/debootstrap --second-stage
	touch "$ROOTFS/.bootstrapped"
fi

BROKER_PID=""
SUB_PID=""
cleanup() {
	[ -n "$SUB_PID" ] && kill "$SUB_PID" 2>/dev/null
	[ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null
	for m in dev/pts dev sys proc; do
		mountpoint -q "$ROOTFS/$m" && umount -l "$ROOTFS/$m"
	done
	return 0
}
trap cleanup EXIT
cleanup # mounts left by an interrupted run
mount -t proc proc "$ROOTFS/proc"
mount --rbind /sys "$ROOTFS/sys"
mount --bind /dev "$ROOTFS/dev"
mount --bind /dev/pts "$ROOTFS/dev/pts"
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
missing=$(for p in ${ROOT_PACKAGES//,/ }; do in_root dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
	say "apt-get install in the root:" $missing
	in_root apt-get update -qq
	in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi

say "copy this checkout (tracked and untracked, not ignored files) to /src"
rm -rf "$ROOTFS/src"
mkdir -p "$ROOTFS/src"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$ROOTFS/src"
in_root uname -m | grep -qx aarch64 || die "the root does not run as aarch64"
in_root python3 --version

if [ -x "$ROOTFS$VENV/bin/emoedge" ]; then
	say "uninstall --purge the previous run's install"
	in_root "$VENV/bin/emoedge" uninstall --purge
	[ ! -e "$ROOTFS/etc/systemd/system/emoedge.service" ] || die "uninstall left the unit behind"
	[ ! -e "$ROOTFS/etc/systemd/system/multi-user.target.wants/emoedge.service" ] ||
		die "uninstall left the unit enabled"
fi

say "install as the README says: python3 -m edge.install from the checkout (standard library only)"
in_root sh -c 'cd /src && exec python3 -m edge.install --platform raspberry-pi'
again=$(in_root "$VENV/bin/emoedge" install --platform raspberry-pi)
printf '%s\n' "$again"
[[ $again == *"nothing to do"* ]] || die "a second emoedge install changed something"
[ "$(in_root systemctl is-enabled emoedge.service)" = enabled ] || die "emoedge.service is not enabled"
verify=$(in_root systemd-analyze verify /etc/systemd/system/emoedge.service 2>&1 || true)
[ -z "$verify" ] || die "systemd-analyze verify in the arm64 root: $verify"
in_root "$VENV/bin/python" -c 'import numpy, sys; print("numpy", numpy.__version__); sys.exit(numpy.__version__ >= "2")' ||
	die "numpy 2 in the venv would break picamera2 on Raspberry Pi OS"

say "broker on the host's loopback, subscriber on the host"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mosquitto -p "$PORT" >"$BUILD/mosquitto.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
rm -f "$BUILD/received.json"
mosquitto_sub -h 127.0.0.1 -p "$PORT" -t emoedge/check-arm64/result -C 1 -W 600 >"$BUILD/received.json" &
SUB_PID=$!
sleep 1

say "one inference of the default model on the bundled sample + one MQTT publish (aarch64)"
model_args=()
if [ -n "${ARM64_MODEL:-}" ]; then
	rm -rf "$ROOTFS/model"
	cp -r "$ARM64_MODEL" "$ROOTFS/model"
	model_args=(--model /model)
fi
in_root "$VENV/bin/python" /src/scripts/arm64_smoke.py --host 127.0.0.1 --port "$PORT" \
	--topic emoedge/check-arm64/result "${model_args[@]}"
wait "$SUB_PID" || die "the host subscriber received nothing from the arm64 root"
SUB_PID=""
say "received on the host: $(cat "$BUILD/received.json")"
grep -q '"label"' "$BUILD/received.json" || die "unexpected message: $(cat "$BUILD/received.json")"
say "check-arm64: OK"
