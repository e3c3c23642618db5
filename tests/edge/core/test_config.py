"""The daemon's TOML schema: the shipped template validates; every error names key, value
and what is allowed; `emoedge config check` reports it with exit code 3."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from edge.cli import main
from edge.core.config import Config, load_config, parse_config
from edge.core.errors import ConfigError
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


def test_template_documents_every_key() -> None:
    """Each key of every table appears in the template, set or commented out."""
    from dataclasses import fields

    from edge.mqtt.config import MqttConfig, QosConfig, TlsConfig

    text = TEMPLATE.read_text()
    keys = {f.name for cls in (MqttConfig, QosConfig, TlsConfig) for f in fields(cls)}
    keys -= {"tls", "qos", "host", "port"}  # tables, and the url's parts
    missing = sorted(k for k in keys if not re.search(rf"^#? ?{k} = ", text, re.MULTILINE))
    assert not missing, f"the template does not document {missing}"


def test_every_error_of_a_file_is_listed_at_once(tmp_path: Path) -> None:
    bad = write_toml(tmp_path / "bad.toml", {
        "rates": {"inference_hz": 0},
        "smoothing": {"method": "median", "alpha": 7},
        "cameras": {},
        "mqtt": {"port": 0, "qos": {"events": 3}},
    })  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    message = str(info.value)
    for key in ("rates.inference_hz", "smoothing.method", "smoothing.alpha", "cameras",
                "mqtt.port", "mqtt.qos.events"):  # fmt: skip
        assert key in message, message
    assert "6 problems" in message


@pytest.mark.parametrize(
    "key", ["connect_timeout_s", "reconnect_min_s", "reconnect_max_s", "heartbeat_s",
            "max_rate_per_topic"],
)  # fmt: skip
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e308"])
def test_non_finite_and_huge_times_and_rates_are_refused(
    tmp_path: Path, key: str, value: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[mqtt]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=rf"mqtt\.{key}: invalid value"):
        load_config(path)


def test_config_check_verifies_the_files_it_names(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x")
    secret.chmod(0)
    config = write_toml(tmp_path / "c.toml", {
        "camera": {"source": "file", "path": str(tmp_path / "no.avi")},
        "microphone": {"source": "file", "path": str(tmp_path / "no.flac")},
        "model": {"artifact": str(tmp_path / "no-model")},
        "mqtt": {"username": "u", "password_file": str(secret)},
    })  # fmt: skip
    code, _, err = finish(emoedge("config", "check", str(config)))
    assert code == ConfigError.exit_code and "Traceback" not in err
    for fragment in ("camera.path: video file not found", "microphone.path: audio file not found",
                     "model.artifact: model artifact not found"):  # fmt: skip
        assert fragment in err, err
    if os.geteuid() != 0:  # root reads everything
        assert "mqtt.password_file" in err and "not readable" in err
