#!/bin/sh
# check-dist.sh DIST VENV: install the wheel in DIST with the edge extra into a fresh virtual
# environment VENV and run `emoedge demo` from outside the checkout, so that the model, the
# sample and the assets it uses can only come from the wheel.
set -eu
wheel=$(ls "$1"/emoedge-*-py3-none-any.whl)
wheel=$(realpath "$wheel")
venv=$(realpath -m "$2")
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "$wheel[edge]"
cd "$(mktemp -d)"
"$venv/bin/emoedge" --version
"$venv/bin/emoedge" demo
echo "check-dist: $(basename "$wheel") installs into a clean venv and runs emoedge demo"
