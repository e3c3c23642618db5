"""Credentials and certificates: right ones connect; wrong ones are a clear error and exit code
7 at once, never a silent retry loop."""

from __future__ import annotations

import pytest

from edge.cli import main
from edge.core.errors import BrokerError
from edge.mqtt.config import parse_mqtt_config
from edge.mqtt.publisher import MqttPublisher
from tests.fixtures_mqtt import wait_for


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
@pytest.mark.parametrize("kind", ["auth", "tls", "mtls"])
def test_right_credentials_and_certificate_connect(mqtt_broker, make_publisher, kind, protocol):
    publisher = make_publisher(mqtt_broker, f"ok-{kind}", kind, protocol=protocol)
    wait_for(lambda: publisher.connected, what="connected")


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_wrong_password_is_a_broker_error(mqtt_broker, tmp_path, protocol) -> None:
    wrong = tmp_path / "pw"
    wrong.write_text("not-the-password")
    table = mqtt_broker.mqtt_table("auth", password_file=str(wrong), protocol=protocol)
    publisher = MqttPublisher(parse_mqtt_config(table), "badpw", "m")
    with pytest.raises(BrokerError, match="refused the connection as user 'emoedge'") as error:
        publisher.start()
    assert error.value.exit_code == 7
    assert "not-the-password" not in str(error.value)


def test_anonymous_on_the_password_listener_is_a_broker_error(mqtt_broker) -> None:
    publisher = MqttPublisher(parse_mqtt_config({"url": mqtt_broker.url("auth")}), "anon", "m")
    with pytest.raises(BrokerError, match="refused the connection anonymously"):
        publisher.start()


def test_untrusted_certificate_is_a_broker_error(mqtt_broker) -> None:
    table = mqtt_broker.mqtt_table("tls", tls={"ca_file": str(mqtt_broker.certs.rogue_ca_file)})
    publisher = MqttPublisher(parse_mqtt_config(table), "badca", "m")
    with pytest.raises(BrokerError, match=r"certificate of the broker .* is not trusted"):
        publisher.start()


def test_missing_client_certificate_is_a_broker_error(mqtt_broker) -> None:
    table = mqtt_broker.mqtt_table("mtls", tls={"ca_file": str(mqtt_broker.certs.ca_file)})
    publisher = MqttPublisher(parse_mqtt_config(table), "nocert", "m")
    with pytest.raises(BrokerError, match=r"refused the TLS connection .* \(client certificate"):
        publisher.start()


def test_hostname_mismatch_is_a_broker_error_unless_checking_is_off(mqtt_broker, make_publisher):
    # The certificate names 127.0.0.1, not localhost (the same address by another name).
    url = mqtt_broker.url("tls").replace("127.0.0.1", "localhost")
    tls = {"ca_file": str(mqtt_broker.certs.ca_file)}
    publisher = MqttPublisher(parse_mqtt_config({"url": url, "tls": tls}), "badhost", "m")
    with pytest.raises(BrokerError, match=r"not trusted: .*(mismatch|IP address)"):
        publisher.start()
    relaxed = {"url": url, "tls": tls | {"check_hostname": False}}
    lenient = MqttPublisher(parse_mqtt_config(relaxed), "lenient", "m")
    lenient.start()
    try:
        wait_for(lambda: lenient.connected, what="connected without the hostname check")
    finally:
        lenient.stop()


def test_subscribe_cli_exits_7_with_a_clear_message(mqtt_broker, tmp_path, capsys) -> None:
    wrong = tmp_path / "pw"
    wrong.write_text("nope")
    code = main(["subscribe", "--broker", mqtt_broker.url("auth"), "--username", "emoedge",
                 "--password-file", str(wrong), "--count", "1"])  # fmt: skip
    assert code == 7
    assert "emoedge subscribe: error: the broker at" in capsys.readouterr().err
    code = main(["subscribe", "--broker", mqtt_broker.url("tls"),
                 "--ca-file", str(mqtt_broker.certs.rogue_ca_file), "--count", "1"])  # fmt: skip
    assert code == 7
    assert "not trusted" in capsys.readouterr().err


def test_subscribe_cli_refused_connection_exits_7(capsys) -> None:
    from tests.fixtures_mqtt import free_port

    code = main(["subscribe", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--count", "1"])
    assert code == 7
    assert "Connection refused" in capsys.readouterr().err
