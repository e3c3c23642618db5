"""The daemon's TOML schema: the shipped template validates; every error names key, value
and what is allowed; `emoedge config check` reports it with exit code 3."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli import main
from edge.config import Config, load_config, parse_config
from edge.errors import ConfigError
from tests.fixtures_daemon import REPO, emoedge, finish, write_toml

TEMPLATE = REPO / "edge" / "templates" / "config.toml"


def test_template_validates_and_documents_every_table() -> None:
    config = load_config(TEMPLATE)
    assert isinstance(config, Config)
    text = TEMPLATE.read_text()
    for table in ("camera", "microphone", "model", "rates", "smoothing", "events", "detector",
                  "queues", "stats", "mqtt"):  # fmt: skip
        assert f"[{table}]" in text


def test_values_are_typed() -> None:
    config = parse_config(
        {
            "device_id": "kitchen",
            "camera": {"source": "opencv", "device": "v4l2src ! appsink"},
            "microphone": {"source": "pyaudio", "device": 2, "chunk": 512},
            "rates": {"inference_hz": 5},
            "smoothing": {"method": "window", "window": 3},
            "detector": {"interval_s": 0, "max_drift": 0.1},
            "mqtt": {"url": "mqtt://broker.lan:1884"},
        }
    )
    assert config.detector.interval_s == 0.0 and isinstance(config.detector.interval_s, float)
    assert config.detector.max_drift == 0.1
    assert config.camera.device == "v4l2src ! appsink"
    assert config.microphone.device == 2
    assert config.inference_hz == 5.0 and isinstance(config.inference_hz, float)
    assert config.smoothing.method == "window"
    assert (config.mqtt.host, config.mqtt.port) == ("broker.lan", 1884)


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"camera": {"source": "webcam"}}, ["camera.source", "'webcam'", "picamera2, opencv"]),
        ({"rates": {"inference_hz": 0}}, ["rates.inference_hz", "0", "[0.01, 120.0]"]),
        ({"rates": {"inference_hz": "fast"}}, ["rates.inference_hz", "'fast'"]),
        ({"smoothing": {"alpha": 1.5}}, ["smoothing.alpha", "1.5", "(0, 1]"]),
        ({"events": {"threshold": True}}, ["events.threshold", "True"]),
        ({"model": {"backend": "tensorflow"}}, ["model.backend", "'tensorflow'", "onnxruntime"]),
        ({"detector": {"kind": "yolo"}}, ["detector.kind", "'yolo'", "blazeface, haar"]),
        ({"detector": {"interval_s": -1}}, ["detector.interval_s", "-1", "[0.0, 3600.0]"]),
        ({"detector": {"max_drift": 2}}, ["detector.max_drift", "2", "[0.0, 1.0]"]),
        ({"device_id": "living room"}, ["device_id", "'living room'", "A-Z"]),
        ({"camera": {"fps": 30, "colour": True}}, ["camera.colour", "unknown key", "allowed"]),
        ({"camera": {"source": "file"}}, ["camera.path", "required"]),
        ({"microphone": {"device": -1}}, ["microphone.device", "-1", "index >= 0"]),
        ({"camera": {"source": "none"}, "microphone": {"source": "none"}}, ["nothing to analyse"]),
        ({"mqtt": {"password": "hunter2"}}, ["mqtt.password", "password_env"]),
        ({"mqtt": {"port": 0}}, ["mqtt.port", "1..65535"]),
        ({"cameras": {}}, ["cameras", "unknown key"]),
    ],
)
def test_errors_name_key_value_and_rule(data: dict, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_secret_never_appears_in_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"mqtt": {"password": "hunter2"}})
    assert "hunter2" not in str(info.value)


def test_config_check_cli(tmp_path: Path) -> None:
    """The real console script once (exit code, no traceback)."""
    bad = write_toml(tmp_path / "bad.toml", {"smoothing": {"method": "median"}})
    code, _, err = finish(emoedge("config", "check", str(bad)))
    assert code == ConfigError.exit_code
    assert "smoothing.method" in err and "'median'" in err and "ema, window" in err
    assert "Traceback" not in err


def test_config_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_toml(tmp_path / "good.toml", {"device_id": "porch", "rates": {"inference_hz": 4}})
    assert main(["config", "check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "porch" in out

    broken = tmp_path / "broken.toml"
    broken.write_text("[camera\nsource = 'opencv'\n")
    assert main(["config", "check", str(broken)]) == ConfigError.exit_code
    assert "not valid TOML" in capsys.readouterr().err

    assert main(["config", "check", str(tmp_path / "missing.toml")]) == ConfigError.exit_code
    assert "not found" in capsys.readouterr().err
