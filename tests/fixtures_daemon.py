"""Fixtures for the daemon's tests: a tiny exported model, daemon configs, subprocess runs.

`tiny_model` exports a randomly initialised student to ONNX with a real manifest through the
export package (torch is fine in tests, never in `edge/`), so the tests do not depend on the
bundled default model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_export import TINY
from tests.fixtures_mqtt import Broker, MessageLog

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "edge" / "assets" / "sample"
FAKES = Path(__file__).resolve().parent / "fakes"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifact folder: model.onnx + manifest.json of a random tiny student (seeded).

    Exported with the TorchScript exporter: on a loaded 2-core machine it takes seconds where
    the dynamo exporter takes minutes; the manifest is the export package's."""
    import torch

    from distill.models import build_model
    from edge.audio.frontend import AudioConfig
    from edge.vision.face import FaceConfig
    from export.artifact import (
        INPUT_NAMES,
        OUTPUT_NAME,
        AllLogits,
        Converted,
        Source,
        example_inputs,
        write_artifact,
    )

    torch.manual_seed(0)
    model = build_model("student", TINY["student"]).eval()
    dest = tmp_path_factory.mktemp("tiny-model")
    audio, face = AudioConfig(), FaceConfig()
    inputs = example_inputs(audio, face, batch=2)
    torch.onnx.export(
        AllLogits(model),
        tuple(inputs[name] for name in INPUT_NAMES),
        str(dest / "model.onnx"),
        input_names=list(INPUT_NAMES),
        output_names=[OUTPUT_NAME],
        dynamic_axes={name: {0: "batch"} for name in (*INPUT_NAMES, OUTPUT_NAME)},
        opset_version=18,
        dynamo=False,
    )
    source = Source(Path("random-student.pt"), "0" * 64, "student", audio, face)
    write_artifact(dest, Converted("model.onnx"), source, "onnx", "fp32")
    return dest


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    """A TOML file from nested dicts (tables one level deep plus sub-tables)."""
    lines: list[str] = []

    def table(name: str, body: dict[str, Any]) -> None:
        subs = {k: v for k, v in body.items() if isinstance(v, dict)}
        if name:
            lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in body.items() if k not in subs)
        for k, v in subs.items():
            table(f"{name}.{k}" if name else k, v)

    table("", data)
    path.write_text("\n".join(lines) + "\n")
    return path


def sample_config(model: Path, mqtt: dict[str, Any], **overrides: dict[str, Any]) -> dict:
    """A daemon config that replays the bundled sample with `model`; tables overridable."""
    config: dict[str, Any] = {
        "device_id": "testcam",
        "camera": {"source": "file", "path": str(SAMPLE / "sample.avi")},
        "microphone": {"source": "file", "path": str(SAMPLE / "sample.flac")},
        "model": {"artifact": str(model), "backend": "onnxruntime", "threads": 1},
        "rates": {"inference_hz": 10.0},
        "stats": {"interval_s": 1.0},
        "mqtt": {**mqtt, "discovery": False},
    }
    for key, table in overrides.items():
        config[key] = {**config.get(key, {}), **table}
    return config


def emoedge(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen:
    """`emoedge ARGS` as a subprocess of this venv's Python (stdout/stderr captured)."""
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        **kw,
    )


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    """Wait for the process (SIGKILL after `timeout`); (returncode, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"emoedge did not finish in {timeout} s:\n{err}") from None
    return proc.returncode, out, err


def clip_states(
    video: Path, audio: Path, tmp_path: Path, broker: Broker, **overrides: dict[str, Any]
) -> list[dict]:
    """Every state the real daemon (`emoedge run`: file sources, the bundled default model on
    ONNX Runtime at 10 Hz, a state at least every 0.2 s) publishes over `broker` while it plays one
    clip, decoded; config tables overridable. The daemon must exit cleanly."""
    prefix = f"clip{uuid.uuid4().hex[:8]}"
    config: dict[str, Any] = {
        "device_id": "clip",
        "camera": {"source": "file", "path": str(video)},
        "microphone": {"source": "file", "path": str(audio)},
        "model": {"artifact": "default", "backend": "onnxruntime", "threads": 1},
        "rates": {"inference_hz": 10.0},
        "events": {"threshold": 0.0, "hold_s": 0.0, "heartbeat_s": 0.2},
        "queues": {"max_audio_wait_s": 5.0},
        "mqtt": {**broker.mqtt_table(prefix=prefix), "discovery": False},
        **overrides,
    }
    topic = f"{prefix}/clip/state"
    log = MessageLog(broker, topic)
    try:
        code, _, err = finish(
            emoedge("run", "--config", str(write_toml(tmp_path / "c.toml", config))), 120
        )
    finally:
        log.close()
    assert code == 0, err
    return [json.loads(payload) for payload in log.on(topic)]
