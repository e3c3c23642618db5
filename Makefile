# emoedge — `make test` and `make demo` build their own environments from nothing (idempotent).
PYTHON ?= python3
VENV := .venv
EDGE_VENV := .venv-edge
PIP_FLAGS := -q --disable-pip-version-check
# System packages the tests talk to for real: the MQTT broker, PortAudio/ALSA, libsndfile,
# systemd-analyze, openssl for test certificates, OpenCV's cascade files for the Haar fallback
# detector.
APT_PACKAGES := mosquitto mosquitto-clients portaudio19-dev libasound2-plugins alsa-utils \
	libsndfile1 systemd openssl opencv-data

.PHONY: test test-fast demo dist lint format system-deps check-arm64 clean default-model \
	lite-model pack gpu-import

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(VENV)/bin/pip install $(PIP_FLAGS) -e '.[workstation,dev]'
	touch $@

$(EDGE_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(EDGE_VENV)/bin/pip install $(PIP_FLAGS) -e '.[edge]'
	touch $@

test: system-deps $(VENV)/.installed
	$(VENV)/bin/ruff check edge distill export tests
	$(VENV)/bin/python -m pytest

demo: system-deps $(EDGE_VENV)/.installed
	$(EDGE_VENV)/bin/emoedge demo

# A release: the wheel and the sdist in dist/ (models, sample and assets inside; the version is
# edge/__init__.py's), then the wheel installed with the edge extra into a clean venv runs
# `emoedge demo` from outside the checkout.
dist: system-deps $(VENV)/.installed
	rm -rf dist
	$(VENV)/bin/python -m build --outdir dist .
	scripts/check-dist.sh dist build/dist-check

# The inner loop: ruff and the tests not marked slow, stopping at the first failure.
test-fast: system-deps $(VENV)/.installed
	$(VENV)/bin/ruff check edge distill export tests
	$(VENV)/bin/python -m pytest -m "not slow" -x -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check edge distill export tests

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix edge distill export tests
	$(VENV)/bin/ruff format edge distill export tests

# arm64 Debian bookworm under qemu-user: install + one inference (compared with x86) + one
# MQTT publish. Minutes; needs root and binfmt; not part of `make test` (see README.md,
# "Checking on ARM", and scripts/check-arm64.sh).
check-arm64:
	$(MAKE) system-deps APT_PACKAGES="$(APT_PACKAGES) debootstrap qemu-user-static binfmt-support git gcc"
	scripts/check-arm64.sh

# The bundled models (MODEL_CARD.md). Each export validates every artifact against PyTorch on the
# whole test split; the bundle takes per format the int8 artifact where it passed the int8 gate
# and the float one where it did not (export exits 8 then; DEST/report.md says why).
# default: the student whose voice runs Whisper base's first blocks, ONNX only (each artifact is
# scored in ~15 min on two cores); without its 45 MB fp32 ONNX (--no-fallback).
DEFAULT_STUDENT ?= distill/checkpoints/student-whisper-voice.pt
DEFAULT_EXPORT_DIR ?= build/export-default
default-model: $(VENV)/.installed
	$(VENV)/bin/emoedge export $(DEFAULT_STUDENT) --formats onnx --int8 \
		--out $(DEFAULT_EXPORT_DIR) || [ $$? -eq 8 ]
	$(VENV)/bin/python -m export.bundle --no-fallback $(DEFAULT_EXPORT_DIR) edge/models/default

# lite: the small student, every format, plus the fp32 ONNX that every runtime reads.
LITE_STUDENT ?= distill/checkpoints/student.pt
LITE_EXPORT_DIR ?= build/export-lite
lite-model: $(VENV)/.installed
	$(VENV)/bin/emoedge export $(LITE_STUDENT) --formats onnx,openvino,tflite --int8 \
		--out $(LITE_EXPORT_DIR) || [ $$? -eq 8 ]
	$(VENV)/bin/python -m export.bundle $(LITE_EXPORT_DIR) edge/models/lite

# Training on a lent GPU machine (scripts/gpu_recipe.py): `make pack` writes the training and
# validation splits of the corpora as a data pack in parts of at most 25 MB (one part per call
# beside the ~34 MB tracked tree, within a call's 64 MiB); after the run, `make gpu-import
# GPU_OUT=<the folder its files came back to>` puts each <stage>.best.pt at
# GPU_RUN/<stage>/best.pt with the records and the log beside it.
PACK ?= pack
PACK_SPLITS ?= train,val
PACK_PART_MB ?= 25
GPU_OUT ?= gpu-out
GPU_RUN ?= runs/gpu
pack: $(VENV)/.installed
	$(VENV)/bin/emoedge distill pack --splits $(PACK_SPLITS) --part-mb $(PACK_PART_MB) --out $(PACK)

gpu-import:
	mkdir -p $(GPU_RUN)
	tar -xzf $(GPU_OUT)/records.tar.gz -C $(GPU_RUN) --strip-components=1
	for f in $(GPU_OUT)/*.best.pt; do \
		stage=$$(basename $$f .best.pt); mkdir -p $(GPU_RUN)/$$stage; \
		cp $$f $(GPU_RUN)/$$stage/best.pt; \
	done

clean:
	rm -rf --one-file-system $(VENV) $(EDGE_VENV) build dist *.egg-info .pytest_cache .ruff_cache
