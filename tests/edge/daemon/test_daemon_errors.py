"""Bad input to `emoedge run`: each a clear message and its exit code, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge.backends import BUNDLES
from edge.cli import main
from edge.core.errors import ConfigError, DataError, DeviceError, ModelError
from edge.core.manifest import sha256_file
from tests.fixtures_daemon import emoedge, finish, sample_config, write_toml
from tests.fixtures_mqtt import free_port

NO_BROKER = {"url": f"mqtt://127.0.0.1:{free_port()}"}


def _tflite_copy(dest: Path) -> Path:
    """A copy of the bundled TFLite artifact (int8 or float, whichever passed the gate) to
    damage."""
    shutil.copytree(next((BUNDLES / "lite").glob("tflite-*")), dest)
    return dest


def _edit_manifest(artifact: Path, **changes: object) -> None:
    path = artifact / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _on_litert(artifact: Path) -> dict:
    config = sample_config(artifact, NO_BROKER)
    config["model"]["backend"] = "litert"
    return config


def cases(tmp_path: Path, model: Path) -> dict[str, tuple[dict | str, int, str]]:
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 40)
    noise = tmp_path / "unreadable.wav"
    noise.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" * 10)
    no_manifest = tmp_path / "no-manifest"
    no_manifest.mkdir()
    shutil.copy(model / "model.onnx", no_manifest / "model.onnx")
    corrupt_tflite = _tflite_copy(tmp_path / "corrupt-tflite")
    model_file = corrupt_tflite / "model.tflite"
    blob = model_file.read_bytes()  # the middle third zeroed: a valid flatbuffer, bad tensors
    third = len(blob) // 3
    model_file.write_bytes(blob[:third] + bytes(third) + blob[2 * third :])
    _edit_manifest(corrupt_tflite, sha256=sha256_file(model_file))
    two_inputs = _tflite_copy(tmp_path / "two-inputs")
    _edit_manifest(two_inputs, inputs=json.loads((two_inputs / "manifest.json").read_text())[
        "inputs"][:2])  # fmt: skip
    huge_window = _tflite_copy(tmp_path / "huge-window")
    audio = json.loads((huge_window / "manifest.json").read_text())["audio"]
    _edit_manifest(huge_window, audio={**audio, "window_s": 1e9})
    return {
        "corrupt tflite": (
            _on_litert(corrupt_tflite),
            ModelError.exit_code,
            "litert cannot load",
        ),
        "tflite manifest with two inputs": (
            _on_litert(two_inputs),
            ModelError.exit_code,
            "'inputs'",
        ),
        "manifest window of 1e9 s": (
            _on_litert(huge_window),
            ModelError.exit_code,
            "audio/window_s",
        ),
        "corrupt video": (
            sample_config(model, NO_BROKER, camera={"path": str(corrupt)}),
            DataError.exit_code,
            "cannot decode video file",
        ),
        "unreadable audio": (
            sample_config(model, NO_BROKER, microphone={"path": str(noise)}),
            DataError.exit_code,
            "cannot read audio file",
        ),
        "missing camera": (
            sample_config(model, NO_BROKER, camera={"source": "opencv", "device": 97}),
            DeviceError.exit_code,
            "cannot open camera 97",
        ),
        "missing microphone": (
            sample_config(model, NO_BROKER, microphone={"source": "pyaudio", "device": "nope"}),
            DeviceError.exit_code,
            "no input device 'nope'",
        ),
        "no picamera2": (
            sample_config(model, NO_BROKER, camera={"source": "picamera2"}),
            DeviceError.exit_code,
            "needs the picamera2 package",
        ),
        "model without manifest": (
            sample_config(no_manifest, NO_BROKER),
            ModelError.exit_code,
            "manifest",
        ),
        "broken config": (
            "[rates]\ninference_hz = 'often'\n",
            ConfigError.exit_code,
            "rates.inference_hz",
        ),
    }


def test_bad_input_is_a_clear_error(tmp_path: Path, tiny_model: Path) -> None:
    table = cases(tmp_path, tiny_model)
    procs = {}
    for name, (config, _, _) in table.items():
        path = tmp_path / f"{name.replace(' ', '-')}.toml"
        if isinstance(config, str):
            path.write_text(config)
        else:
            write_toml(path, config)
        procs[name] = emoedge("run", "--config", str(path))  # all at once: each takes seconds
    failures = []
    for name, (_, code, message) in table.items():
        returncode, _, err = finish(procs[name], timeout=240)
        ok = returncode == code and message in err and "Traceback" not in err
        ok = ok and "emoedge run: error:" in err
        if not ok:
            failures.append(f"{name}: exit {returncode} (want {code}), stderr:\n{err[-800:]}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("seconds", ["0", "-3"])
def test_demo_rejects_bad_seconds(seconds: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seconds", seconds]) == 2
    assert "--seconds must be > 0" in capsys.readouterr().err
