#!/usr/bin/env bash
# make check-arm64: the device half of emoedge on arm64 Debian bookworm, before a board is at hand.
#
# Builds an arm64 bookworm root with debootstrap (--foreign; the second stage runs under
# qemu-aarch64 through binfmt) and caches it; installs this checkout there the way the README
# tells a Raspberry Pi owner to (`python3 -m edge.install`: venv with system site packages,
# pip install '.[edge]' 'numpy<2' from PyPI's aarch64 wheels, config, unit, enable; a second
# run must change nothing); then runs scripts/arm64_smoke.py in it: BlazeFace + every bundled
# .onnx and .tflite artifact of the bundled models on the bundled sample, compared with the
# same script run on this x86 host, and one MQTT publish to a broker on the host's loopback,
# which a subscriber on the host must receive. Ends with the wall time of each step.
# What this proves and what only a board can: README.md, "Checking on ARM".
#
# Idempotent: a second run reuses the root (rebuilt only when ROOT_PACKAGES changes or a build
# was interrupted), the pip caches and the x86 reference venv (re-made when pyproject.toml
# changes), uninstalls the previous run's install and installs again.
# No apt-get runs inside the root: everything apt installs comes in with debootstrap (its
# downloads run natively), so no package lists are parsed under emulation.
#
# Environment: ARM64_MODEL (one exported ONNX/TFLite artifact folder instead of the bundled
# default model), ARM64_BUILD (default /var/tmp/emoedge-arm64, the cache; outside the checkout
# on purpose: while this runs the root has /proc and /dev mounted, and tools that walk
# the source tree must not wander into them), DEBIAN_MIRROR (default
# http://deb.debian.org/debian), ARM64_TOLERANCE (max probability difference to x86 on the
# same inputs, default 0.02), PIP_CERT or SSL_CERT_FILE (the CA bundle pip in the root
# trusts, default the host's /etc/ssl/certs/ca-certificates.crt), http(s)_proxy/no_proxy
# (passed on). Needs root and the apt packages debootstrap qemu-user-static binfmt-support mosquitto mosquitto-clients git, gcc
# and portaudio19-dev (`make check-arm64` installs them).
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${ARM64_BUILD:-/var/tmp/emoedge-arm64}
ROOTFS=$BUILD/rootfs
HOST_VENV=$BUILD/x86-venv
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TOLERANCE=${ARM64_TOLERANCE:-0.02}
HOST_CA=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
VENV=/opt/emoedge/venv
# What the root gets from apt, all through debootstrap: Python, venv, TLS roots for pip,
# PyAudio (PyPI has no aarch64 wheel; Raspberry Pi OS users get it from apt too) and systemd
# (systemctl and systemd-analyze for the installer and the unit). Everything else is a wheel.
ROOT_PACKAGES=python3,python3-venv,python3-pyaudio,ca-certificates,systemd

say() { printf '\n== %s\n' "$*"; }
die() { printf '\ncheck-arm64: error: %s\n' "$*" >&2; exit 1; }

STEP_NAMES=()
STEP_TIMES=()
STEP_NAME=""
STEP_START=""
# step NAME: end the running step (recording its wall time), announce and start NAME.
step() {
	local now=$EPOCHREALTIME
	if [ -n "$STEP_NAME" ]; then
		STEP_NAMES+=("$STEP_NAME")
		STEP_TIMES+=("$(awk -v a="$STEP_START" -v b="$now" 'BEGIN { printf "%.1f", b - a }')")
	fi
	STEP_NAME=$1
	STEP_START=$now
	[ -z "$1" ] || say "$1"
}
summary() {
	local i total=0
	[ "${#STEP_NAMES[@]}" -gt 0 ] || return 0
	printf '\n== wall time per step (s)\n'
	for i in "${!STEP_NAMES[@]}"; do
		printf '%8s  %s\n' "${STEP_TIMES[$i]}" "${STEP_NAMES[$i]}"
		total=$(awk -v a="$total" -v b="${STEP_TIMES[$i]}" 'BEGIN { print a + b }')
	done
	printf '%8s  total\n' "$total"
}

# ------------------------------------------------------------------ host prerequisites
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts): sudo make check-arm64"
for tool in debootstrap qemu-aarch64-static update-binfmts mosquitto mosquitto_sub git python3; do
	command -v "$tool" >/dev/null ||
		die "$tool not found: apt-get install debootstrap qemu-user-static binfmt-support mosquitto mosquitto-clients git"
done

step "binfmt: aarch64 binaries run through qemu-aarch64"
BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e "$BINFMT/register" ]; then
	mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null ||
		die "binfmt_misc is not mounted and cannot be (an unprivileged container?): on the host run
  sudo apt-get install qemu-user-static binfmt-support   (or: docker run --privileged --rm tonistiigi/binfmt --install arm64)"
fi
[ -e "$BINFMT/qemu-aarch64" ] || update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 ||
	die "cannot register the qemu-aarch64 binfmt handler (update-binfmts --enable qemu-aarch64 failed)"
grep -qx enabled "$BINFMT/qemu-aarch64" ||
	die "the qemu-aarch64 binfmt handler is disabled: update-binfmts --enable qemu-aarch64"
grep -q '^flags:.*F' "$BINFMT/qemu-aarch64" ||
	echo "note: the handler lacks the F flag; the root carries its own qemu-aarch64-static"
sed -n 's/^interpreter /interpreter: /p' "$BINFMT/qemu-aarch64"
# runs_aarch64: the root's binaries execute and report aarch64 (binfmt + qemu really work).
runs_aarch64() {
	local machine
	machine=$(chroot "$ROOTFS" /usr/bin/uname -m 2>&1) ||
		die "cannot run the root's aarch64 binaries ($machine): binfmt/qemu-aarch64 does not work here"
	[ "$machine" = aarch64 ] || die "the root runs as $machine, not aarch64"
}

# labels FILE MACHINE: "artifact label, ..." from a smoke result made on MACHINE, else fail.
labels() {
	python3 - "$1" "$2" <<'EOF'
import json, sys
result = json.load(open(sys.argv[1]))
assert result["machine"] == sys.argv[2], result["machine"]
print(", ".join(f"{name} {r['label']}" for name, r in result["results"].items()))
EOF
}

# ------------------------------------------------------------------ mounts, cleanup
BROKER_PID=""
SUB_PID=""
unmount_root() {
	local m
	for m in dev/pts dev sys proc; do
		if mountpoint -q "$ROOTFS/$m" 2>/dev/null; then umount -l "$ROOTFS/$m"; fi
	done
}
cleanup() {
	local rc=$?
	if [ -n "$SUB_PID" ]; then kill "$SUB_PID" 2>/dev/null || true; fi
	if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; fi
	unmount_root
	[ -z "$STEP_NAME" ] || step ""
	summary
	[ "$rc" = 0 ] || printf '\ncheck-arm64: FAILED (exit %s); the root stays cached in %s\n' "$rc" "$ROOTFS" >&2
}
trap cleanup EXIT
unmount_root # mounts left by an interrupted run

# ------------------------------------------------------------------ the arm64 root
mkdir -p "$BUILD"
if [ "$(cat "$ROOTFS/.bootstrapped" 2>/dev/null)" = "$ROOT_PACKAGES" ]; then
	step "reuse the cached arm64 bookworm root $ROOTFS"
	runs_aarch64
else
	if [ -e "$ROOTFS/.bootstrapped" ]; then
		reason="its package list changed"
	elif [ -e "$ROOTFS" ]; then
		reason="an earlier build did not finish"
	else
		reason="none cached"
	fi
	step "debootstrap first stage: download + unpack arm64 bookworm ($reason)"
	rm -rf --one-file-system "$ROOTFS"
	mkdir -p "$ROOTFS"
	nice -n 10 debootstrap --arch=arm64 --foreign --variant=minbase \
		--include="$ROOT_PACKAGES" bookworm "$ROOTFS" "$MIRROR"
	install -m 0755 "$(command -v qemu-aarch64-static)" "$ROOTFS/usr/bin/"
	runs_aarch64
	step "debootstrap second stage: configure the packages (aarch64 under qemu)"
	nice -n 10 chroot "$ROOTFS" /debootstrap/debootstrap --second-stage
	printf '%s\n' "$ROOT_PACKAGES" >"$ROOTFS/.bootstrapped"
fi

# No /sys: it describes the host's x86 CPUs, and ONNX Runtime's cpuinfo crashes (SIGSEGV at
# import) parsing it under qemu; without it, cpuinfo only warns and ONNX Runtime runs.
mount -t proc proc "$ROOTFS/proc"
mount --bind /dev "$ROOTFS/dev"
mount --bind /dev/pts "$ROOTFS/dev/pts"
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# pip in the root trusts what the host trusts (a TLS-intercepting proxy's CA, say) and uses its
# proxy settings. No systemd runs as PID 1 in a chroot: SYSTEMD_OFFLINE=1 makes systemctl work
# on the unit files (enable, is-enabled) and skip what needs a running manager (daemon-reload),
# as when building an image.
cp -L "$HOST_CA" "$ROOTFS/etc/ssl/host-ca-certificates.crt"
proxies=()
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
	[ -z "${!v:-}" ] || proxies+=("$v=${!v}")
done
in_root() {
	nice -n 10 chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
		LANG=C.UTF-8 SYSTEMD_OFFLINE=1 PIP_CERT=/etc/ssl/host-ca-certificates.crt "${proxies[@]}" "$@"
}
printf 'root: %s, %s\n' "$(in_root uname -m)" "$(in_root python3 --version)"

step "copy this checkout (tracked and untracked, not ignored files) to the root's /src"
rm -rf --one-file-system "$ROOTFS/src"
mkdir -p "$ROOTFS/src"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$ROOTFS/src"

# ------------------------------------------------------------------ x86 reference
step "x86 reference: the same smoke script on this host (venv $HOST_VENV)"
stamp=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$HOST_VENV/.installed" 2>/dev/null)" != "$stamp" ]; then
	rm -rf "$HOST_VENV"
	python3 -m venv "$HOST_VENV"
	nice -n 10 "$HOST_VENV/bin/pip" install -q --disable-pip-version-check "$ROOTFS/src[edge]" 'numpy<2'
	echo "$stamp" >"$HOST_VENV/.installed"
fi
model_args=()
if [ -n "${ARM64_MODEL:-}" ]; then
	rm -rf "$ROOTFS/model"
	cp -r "$ARM64_MODEL" "$ROOTFS/model"
	model_args=(--model "$ROOTFS/model")
fi
# The snapshot's sources, not the copy installed when the venv was made.
(cd "$BUILD" && PYTHONPATH="$ROOTFS/src" nice -n 10 "$HOST_VENV/bin/python" \
	"$ROOTFS/src/scripts/arm64_smoke.py" --save "$BUILD/x86.npz" "${model_args[@]}" >"$BUILD/x86.json") ||
	die "the smoke script failed on x86: the checkout is broken here already"
cp "$BUILD/x86.npz" "$ROOTFS/x86.npz"
printf 'x86 result: %s\n' "$(labels "$BUILD/x86.json" x86_64)"

# ------------------------------------------------------------------ install in the root
INSTALLED=(/opt/emoedge /etc/emoedge /var/lib/emoedge /etc/systemd/system/emoedge.service
	/etc/systemd/system/multi-user.target.wants/emoedge.service)
if [ -e "$ROOTFS/opt/emoedge/installed.json" ]; then
	# From the host, with the root as a staging root (systemctl --root): in the chroot,
	# `systemctl disable --now` fails, as stopping a unit needs systemd running as PID 1.
	step "uninstall --purge the previous run's install (emoedge uninstall --root on the host)"
	PYTHONPATH="$ROOTFS/src" "$HOST_VENV/bin/emoedge" uninstall --purge --root "$ROOTFS"
	for left in "${INSTALLED[@]}"; do
		[ ! -e "$ROOTFS$left" ] || die "uninstall --purge left $left behind"
	done
elif [ -e "$ROOTFS/opt/emoedge" ]; then
	step "remove what an interrupted install left (it wrote no installed.json)"
	for left in "${INSTALLED[@]}"; do rm -rf --one-file-system "${ROOTFS:?}$left"; done
fi

step "install as the README says: python3 -m edge.install (pip: aarch64 wheels from PyPI, under qemu)"
in_root sh -c 'cd /src && exec python3 -m edge.install --platform raspberry-pi'

step "check the install: a second run changes nothing, unit enabled and verified, numpy < 2"
again=$(in_root "$VENV/bin/emoedge" install --platform raspberry-pi)
printf '%s\n' "$again"
[[ $again == *"nothing to do"* ]] || die "a second emoedge install changed something"
[ "$(in_root systemctl is-enabled emoedge.service)" = enabled ] || die "emoedge.service is not enabled"
verify=$(in_root systemd-analyze verify /etc/systemd/system/emoedge.service 2>&1 || true)
[ -z "$verify" ] || die "systemd-analyze verify in the arm64 root: $verify"
in_root "$VENV/bin/python" -c 'import numpy, sys; print("numpy", numpy.__version__); sys.exit(numpy.__version__ >= "2")' ||
	die "numpy 2 in the venv would break picamera2 on Raspberry Pi OS"
in_root "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") is not None)' ||
	die "torch is installed in the edge venv"

# ------------------------------------------------------------------ inference + MQTT
step "broker on the host's loopback, subscriber on the host"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mosquitto -p "$PORT" >"$BUILD/mosquitto.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || die "mosquitto did not listen on 127.0.0.1:$PORT: $(cat "$BUILD/mosquitto.log")"
rm -f "$BUILD/received.json"
mosquitto_sub -h 127.0.0.1 -p "$PORT" -t emoedge/check-arm64/result -C 1 -W 900 >"$BUILD/received.json" &
SUB_PID=$!
sleep 1
echo "mosquitto on 127.0.0.1:$PORT"

step "aarch64: face detection + inference on the bundled sample, compare with x86, MQTT publish"
[ -z "${ARM64_MODEL:-}" ] || model_args=(--model /model)
in_root "$VENV/bin/python" /src/scripts/arm64_smoke.py \
	--reference /x86.npz --tolerance "$TOLERANCE" \
	--host 127.0.0.1 --port "$PORT" --topic emoedge/check-arm64/result "${model_args[@]}" ||
	die "the smoke script failed in the arm64 root (see above)"
wait "$SUB_PID" || die "the host subscriber received nothing from the arm64 root"
SUB_PID=""
received=$(labels "$BUILD/received.json" aarch64) ||
	die "unexpected message: $(cat "$BUILD/received.json")"
echo "received on the host from aarch64: $received"
step ""
say "check-arm64: OK"
