"""The [mqtt] table: defaults, URL forms, and errors that name the key, value and rule."""

from __future__ import annotations

import pytest

from edge.core.errors import ConfigError
from edge.mqtt.config import parse_mqtt_config


def test_defaults_are_safe_and_documented() -> None:
    config = parse_mqtt_config({})
    assert (config.host, config.port, config.prefix) == ("localhost", 1883, "emoedge")
    assert config.qos.events == 1 and config.discovery
    assert config.discovery_prefix == "homeassistant"
    assert config.tls is None and config.password() is None


def test_mqtts_url_turns_tls_on_with_hostname_check(tmp_path) -> None:
    config = parse_mqtt_config({"url": "mqtts://broker.lan", "protocol": 5})
    assert (config.host, config.port, config.protocol) == ("broker.lan", 8883, "5")
    assert config.tls is not None and config.tls.check_hostname
    assert config.url == "mqtts://broker.lan:8883"


def test_password_comes_from_a_file_or_the_environment(tmp_path, monkeypatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    from_file = parse_mqtt_config({"username": "u", "password_file": str(secret)})
    assert from_file.password() == "hunter2"
    assert "hunter2" not in repr(from_file)
    monkeypatch.setenv("EMOEDGE_PW", "from-env")
    assert parse_mqtt_config({"username": "u", "password_env": "EMOEDGE_PW"}).password() == (
        "from-env"
    )
    monkeypatch.delenv("EMOEDGE_PW")
    with pytest.raises(ConfigError, match="EMOEDGE_PW is not set"):
        parse_mqtt_config({"username": "u", "password_env": "EMOEDGE_PW"}).password()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"port": 0}, r"mqtt\.port: invalid value 0; allowed: 1\.\.65535"),
        ({"port": "1883"}, r"mqtt\.port: invalid value '1883'"),
        ({"url": "http://x"}, r"mqtt\.url: invalid value 'http://x'"),
        ({"url": "mqtt://u:p@x"}, r"mqtt\.url: credentials do not belong in the URL"),
        ({"url": "mqtt://x", "port": 1}, r"mqtt\.url: give either url or host/port"),
        ({"protocol": "4"}, r"mqtt\.protocol: invalid value '4'; allowed: \"3\.1\.1\" or \"5\""),
        ({"qos": {"events": 3}}, r"mqtt\.qos\.events: invalid value 3; allowed: 0, 1 or 2"),
        ({"qos": {"alerts": 1}}, r"mqtt\.qos\.alerts: unknown key"),
        ({"password": "x"}, r"mqtt\.password: passwords are not read from the configuration"),
        ({"password_env": "X"}, r"mqtt\.username: required when a password is configured"),
        ({"tls": {"ca_file": "/nonexistent/ca.crt"}}, r"mqtt\.tls\.ca_file: file not found"),
        ({"tls": {"certfile": __file__}}, r"mqtt\.tls: certfile and keyfile must be given"),
        ({"prefix": "a/#"}, r"mqtt\.prefix: invalid value 'a/#'"),
        ({"queue_size": 0}, r"mqtt\.queue_size: invalid value 0; allowed: 1\.\.1000000"),
        ({"heartbeat_s": True}, r"mqtt\.heartbeat_s: invalid value True"),
        ({"reconnect_min_s": 5, "reconnect_max_s": 1}, r"mqtt\.reconnect_max_s: invalid value 1"),
        ({"bogus": 1}, r"mqtt\.bogus: unknown key; allowed keys: client_id"),
    ],
)
def test_bad_values_name_the_key_the_value_and_the_rule(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_mqtt_config(table)


def test_key_prefix_follows_the_caller() -> None:
    with pytest.raises(ConfigError, match=r"^daemon\.mqtt\.port:"):
        parse_mqtt_config({"port": -1}, key="daemon.mqtt")
