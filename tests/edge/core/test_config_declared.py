"""Each configuration key is declared once: the shipped template is generated from the
declaration (defaults and help of every key), backend option tables are typed by each
backend's Options, and the one state heartbeat keeps mqtt.heartbeat_s as a deprecated alias."""

from __future__ import annotations

import logging
import re
from dataclasses import is_dataclass

import pytest

import edge.backends
from edge.cli import main
from edge.core.config import Config, load_config, parse_config, template
from edge.core.errors import ConfigError, ModelError
from edge.core.settings import base_type, declared, extras, join
from edge.daemon.wiring import load_runner
from tests.fixtures_daemon import REPO

TEMPLATE = REPO / "edge" / "templates" / "config.toml"
ASSIGNMENT = re.compile(r"^(?:# )?(\w+) = ")
HEADER = re.compile(r"^(?:# )?\[([\w.]+)\]$")


def _declared_keys(cls: type, table: str = "") -> dict[str, str]:
    """Every documented key below `table`: full name -> help."""
    keys = {join(table, e.name): e.key.help for e in extras(cls)}
    for d in declared(cls):
        name = join(table, ".".join(d.path))
        if d.key.deprecated:
            continue
        if d.key.tables is not None:
            for option, kind in d.key.tables().items():
                own = _declared_keys(kind, f"{name}.{option}")
                keys |= {k: h for k, h in own.items() if k.rsplit(".", 1)[1] not in d.key.refused}
        elif is_dataclass(base_type(d.hint)):
            keys |= _declared_keys(base_type(d.hint), name)
        else:
            keys[name] = d.key.help
    return keys


def _template_keys(text: str) -> set[str]:
    """Every key the template sets or shows commented out, by full name."""
    keys, table = set(), ""
    for line in text.splitlines():
        if header := HEADER.match(line):
            table = header[1]
        elif assignment := ASSIGNMENT.match(line):
            keys.add(join(table, assignment[1]))
    return keys


def test_template_is_generated_from_the_declaration() -> None:
    assert TEMPLATE.read_text() == template(), "regenerate: emoedge config template > " + str(
        TEMPLATE.relative_to(REPO)
    )


def test_template_documents_every_declared_key_with_help() -> None:
    declared_keys = _declared_keys(Config)
    assert not [k for k, help in declared_keys.items() if not help], "keys without help"
    documented = _template_keys(template())
    assert sorted(set(declared_keys) - documented) == []
    assert "backend.openvino.device" in documented and "mqtt.tls.ca_file" in documented


def test_template_values_are_the_declared_defaults() -> None:
    assert load_config(TEMPLATE) == Config() == parse_config({})


def test_config_template_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "template"]) == 0
    assert capsys.readouterr().out == TEMPLATE.read_text()


def test_backend_options_are_typed_by_the_backends_options() -> None:
    config = parse_config({"backend": {"openvino": {"device": "GPU", "precision": "f16"}}})
    assert config.backend == {"openvino": {"device": "GPU", "precision": "f16"}}
    with pytest.raises(ConfigError) as info:
        parse_config({"backend": {
            "openvino": {"device": 3, "precision": "f64", "cache": "x", "threads": 2},
            "tensorflow": {},
            "litert": {"providers": ["x"]},
        }})  # fmt: skip
    message = str(info.value)
    for fragment in (
        "6 problems",
        "backend.openvino.device: invalid value 3; allowed: an OpenVINO device name",
        "backend.openvino.precision: invalid value 'f64'; allowed: f32, f16, bf16",
        "backend.openvino.cache: unknown key; allowed keys: device, precision",
        "backend.openvino.threads: set model.threads instead",
        "backend.tensorflow: unknown key; allowed keys: litert, onnxruntime, openvino",
        "backend.litert.providers: set model.providers instead",
    ):
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_backend_options_reach_the_backend() -> None:
    config = parse_config({"model": {"backend": "openvino"},
                           "backend": {"openvino": {"precision": "f32"}}})  # fmt: skip
    runner = load_runner(config.model, config.backend)
    assert (runner.options.precision, runner.options.threads) == ("f32", config.model.threads)
    config = parse_config({"model": {"backend": "openvino"},
                           "backend": {"openvino": {"device": "NO-SUCH-DEVICE"}}})  # fmt: skip
    with pytest.raises(ModelError, match="NO-SUCH-DEVICE"):
        load_runner(config.model, config.backend)


def test_backends_without_options_of_their_own_are_not_in_the_template() -> None:
    text = template()
    assert "[backend.openvino]" in text
    for name in edge.backends.BACKENDS:
        if name != "openvino":
            assert f"[backend.{name}]" not in text


def test_one_heartbeat_with_the_deprecated_mqtt_key(caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config({"events": {"heartbeat_s": 10}})
    assert (config.events.heartbeat_s, config.mqtt.heartbeat_s) == (10.0, 20.0)
    assert not caplog.records

    with caplog.at_level(logging.WARNING, logger="emoedge.config"):
        config = parse_config({"mqtt": {"heartbeat_s": 5}})
    assert (config.events.heartbeat_s, config.mqtt.heartbeat_s) == (5.0, 10.0)
    assert "mqtt.heartbeat_s is deprecated" in caplog.text and "events.heartbeat_s" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emoedge.config"):
        config = parse_config({"mqtt": {"heartbeat_s": 5}, "events": {"heartbeat_s": 30}})
    assert (config.events.heartbeat_s, config.mqtt.heartbeat_s) == (30.0, 60.0)
    assert "ignored" in caplog.text and "remove mqtt.heartbeat_s" in caplog.text

    with pytest.raises(ConfigError, match=r"mqtt\.heartbeat_s: invalid value 0"):
        parse_config({"mqtt": {"heartbeat_s": 0}})


def test_tables_and_keys_in_the_wrong_shape_are_reported_with_the_rest() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"rates": 5, "mqtt": {"tls": "yes", "url": "mqtt://u:p@x", "qos": []},
                      "backend": [], "fusion": {"mode": "both"}})  # fmt: skip
    message = str(info.value)
    for fragment in ("6 problems", "rates: expected a table, got 5", "mqtt.tls: invalid value",
                     "mqtt.url: credentials", "mqtt.qos: expected a table", "backend: expected",
                     "fusion.mode: invalid value 'both'"):  # fmt: skip
        assert fragment in message, message
