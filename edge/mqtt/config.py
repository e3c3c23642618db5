"""The `[mqtt]` configuration table: a typed, validated `MqttConfig`, each key declared once
(edge.core.settings).

Errors name the key (e.g. `mqtt.port`), the value and what is allowed. Secrets never live in
the configuration itself: the password comes from an environment variable or a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from edge.core.errors import ConfigError
from edge.core.settings import (
    UNSET,
    Extra,
    Key,
    collected,
    read_table,
    report,
    section,
    setting,
)

PROTOCOLS = ("3.1.1", "5")
SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}
DEFAULT_PORT = {False: 1883, True: 8883}
TOPIC_PREFIX = "a topic prefix without #, + or a leading /"
URL_RULE = "mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"


def _topic_level(v: str) -> bool:
    return bool(v) and not any(c in v for c in "#+\0") and not v.startswith("/")


@dataclass(frozen=True)
class TlsConfig:
    """TLS settings; no `ca_file` means the system's trusted certificates."""

    ca_file: str | None = setting(
        None,
        rule="a file path",
        example="/etc/emoedge/ca.crt",
        help="The CA certificate that signed the broker's; leave out for the system's trusted CAs.",
    )
    certfile: str | None = setting(
        None,
        rule="a file path",
        example="/etc/emoedge/client.crt",
        help="A client certificate, for brokers that ask for one (with keyfile).",
    )
    keyfile: str | None = setting(
        None,
        rule="a file path",
        example="/etc/emoedge/client.key",
        help="The client certificate's private key.",
    )
    check_hostname: bool = setting(
        True, help="Check that the broker's certificate is for the host connected to."
    )

    def checked(self, table: dict[str, Any], key: str) -> TlsConfig:
        """Report missing files and a certificate without its key (or the other way round)."""
        for name in ("ca_file", "certfile", "keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                report(f"{key}.{name}: file not found: {path!r}")
        if (self.certfile is None) != (self.keyfile is None):
            report(f"{key}: certfile and keyfile must be given together")
        return self


def _read_tls(value: Any, key: str) -> TlsConfig | None:
    """`tls = true` (the system's trusted certificates), `false`, or a [mqtt.tls] table."""
    if isinstance(value, bool):
        return TlsConfig() if value else None
    if isinstance(value, dict):
        return read_table(TlsConfig, value, key)
    report(f"{key}: invalid value {value!r}; allowed: true, false or a table")
    return UNSET


QOS = {"choices": (0, 1, 2), "rule": "0, 1 or 2"}


@dataclass(frozen=True)
class QosConfig:
    """QoS per topic kind (0, 1 or 2)."""

    state: int = setting(1, **QOS, help="The retained state.")
    events: int = setting(
        1, **QOS, help="Events (with 1 or 2 none is lost while the queue holds them)."
    )
    stats: int = setting(0, **QOS, help="Statistics.")


@dataclass(frozen=True)
class MqttConfig:
    """Where and how the daemon publishes. `tls` None means a plain TCP connection.
    `heartbeat_s`: the publisher re-sends the retained state when nothing newer came for this
    long (the daemon's configuration derives it from events.heartbeat_s)."""

    EXTRA_KEYS: ClassVar = (
        Extra(
            "url",
            "mqtt://localhost:1883",
            Key(rule=URL_RULE, help="The broker as a URL (mqtts:// turns TLS on), or host/port."),
        ),
    )
    REFUSED: ClassVar = {
        "password": "passwords are not read from the configuration; set {key}.password_env "
        "(an environment variable) or {key}.password_file"
    }

    host: str = setting(
        "localhost",
        check=bool,
        rule="a host name or address",
        example="localhost",
        help="The broker's host name or address, instead of url.",
    )
    port: int = setting(
        1883,
        low=1,
        high=65535,
        example=1883,
        help="The broker's port, instead of url (default 1883, with TLS 8883).",
    )
    protocol: str = setting(
        "5",
        accepts=str | int,
        convert=str,
        choices=PROTOCOLS,
        rule='"3.1.1" or "5"',
        help="The MQTT protocol version.",
    )
    client_id: str | None = setting(
        None,
        check=lambda v: 0 < len(v) <= 128,
        rule="1..128 characters",
        example="emoedge-kitchen",
        help='The MQTT client id; leave out for "emoedge-<device_id>" (two clients with one id '
        "fight).",
    )
    prefix: str = setting(
        "emoedge",
        check=_topic_level,
        convert=lambda v: v.rstrip("/"),
        rule=TOPIC_PREFIX,
        help="Topics are <prefix>/<device_id>/...",
    )
    discovery: bool = setting(True, help="Announce the device to Home Assistant (MQTT discovery).")
    discovery_prefix: str = setting(
        "homeassistant",
        check=_topic_level,
        rule=TOPIC_PREFIX,
        help="Home Assistant's discovery topic prefix.",
    )
    tls: TlsConfig | None = setting(
        None,
        read=_read_tls,
        help="TLS: `tls = true` (or an mqtts:// url) uses the system's trusted CAs; or give files:",
    )
    username: str | None = setting(
        None,
        check=bool,
        rule="a non-empty string",
        example="emoedge",
        help="Credentials: never in this file. The password comes from an environment variable "
        "(e.g. set in /etc/emoedge/environment) or from a file readable only by the service.",
    )
    password_env: str | None = setting(
        None,
        check=bool,
        rule="a variable name",
        example="EMOEDGE_MQTT_PASSWORD",
        help="The environment variable that holds the password.",
    )
    password_file: str | None = setting(
        None,
        check=bool,
        rule="a file path",
        example="/etc/emoedge/mqtt-password",
        help="Or the file that holds it.",
    )
    qos: QosConfig = section(QosConfig, help="QoS per topic kind: 0, 1 or 2.")
    keepalive: int = setting(
        30,
        low=5,
        high=65535,
        unit=" seconds",
        help="Seconds between keepalive pings; the broker sends the last will after 1.5 times it.",
    )
    queue_size: int = setting(
        1000,
        low=1,
        high=1000000,
        unit=" messages",
        help="Events kept while the broker is away; beyond it the oldest are dropped.",
    )
    max_rate_per_topic: float = setting(
        20.0,
        low=0.01,
        high=10000.0,
        unit=" messages per second",
        help="At most this many messages per second on each topic.",
    )
    heartbeat_s: float = setting(
        60.0,
        low=0.1,
        high=86400.0,
        unit=" seconds",
        deprecated="events.heartbeat_s",
        help="The retained state is re-sent when nothing newer came for this long.",
    )
    reconnect_min_s: float = setting(
        0.5,
        low=0.01,
        high=300.0,
        unit=" seconds",
        help="Reconnect back-off: the wait doubles from reconnect_min_s up to reconnect_max_s "
        "between attempts; with 1 s the daemon is back within about a second.",
    )
    reconnect_max_s: float = setting(
        1.0,
        low=0.01,
        high=3600.0,
        unit=" seconds",
        help="The longest wait between attempts (at least reconnect_min_s).",
    )
    connect_timeout_s: float = setting(
        10.0,
        low=0.1,
        high=600.0,
        unit=" seconds",
        help="How long one connection attempt waits for the broker's answer.",
    )

    @property
    def url(self) -> str:
        """The broker address as a URL (no credentials)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def password(self) -> str | None:
        """The password from `password_env` or `password_file`; ConfigError when unreadable."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"mqtt.password_env: environment variable {self.password_env} is not set"
                )
            return value
        if self.password_file:
            try:
                return Path(self.password_file).read_text().rstrip("\r\n")
            except OSError as error:
                raise ConfigError(
                    f"mqtt.password_file: cannot read {self.password_file!r} ({error.strerror})"
                ) from error
        return None

    def checked(self, table: dict[str, Any], key: str) -> MqttConfig:
        """The broker from `url` where given; report credentials and back-off that conflict."""
        if self.password_env and self.password_file:
            report(f"{key}.password_env: give password_env or password_file, not both")
        if (self.password_env or self.password_file) and not self.username:
            report(f"{key}.username: required when a password is configured")
        given_max = table.get("reconnect_max_s")
        if given_max == self.reconnect_max_s < self.reconnect_min_s:  # accepted, yet too short
            report(
                f"{key}.reconnect_max_s: invalid value {given_max!r}; allowed: a number in "
                f"[reconnect_min_s ({self.reconnect_min_s}), 3600] seconds"
            )
        return self._broker(table, key)

    def _broker(self, table: dict[str, Any], key: str) -> MqttConfig:
        """Host, port and TLS from `url` where given; else the port's default follows TLS."""
        if "url" not in table:
            return self if "port" in table else replace(self, port=DEFAULT_PORT[bool(self.tls)])
        if "host" in table or "port" in table:
            report(f"{key}.url: give either url or host/port, not both")
            return self
        broker = _parse_url(table["url"], key)
        if broker is None:
            return self
        host, port, tls = broker
        if "tls" not in table:
            return replace(self, host=host, port=port, tls=TlsConfig() if tls else None)
        return replace(self, host=host, port=port)


def _parse_url(url: Any, key: str) -> tuple[str, int, bool] | None:
    """(host, port, TLS) of an mqtt:// or mqtts:// URL; None when it is not one (reported)."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in SCHEMES or not parts.hostname:
        report(f"{key}.url: invalid value {url!r}; allowed: {URL_RULE}")
        return None
    if parts.username or parts.password:
        report(
            f"{key}.url: credentials do not belong in the URL; "
            f"use {key}.username with {key}.password_env or {key}.password_file"
        )
        return None
    try:
        port = parts.port
    except ValueError as error:
        report(f"{key}.url: invalid port in {url!r} ({error})")
        return None
    tls = SCHEMES[parts.scheme]
    return parts.hostname, port or DEFAULT_PORT[tls], tls


def parse_mqtt_config(table: dict[str, Any], key: str = "mqtt") -> MqttConfig:
    """Validate the `[mqtt]` table; ConfigError names the key, the value and what is allowed
    (every problem of the table at once).

    The broker is given either as `url` (mqtt://host:port, mqtts:// turns TLS on) or as
    `host`/`port`. A plain `password` key is refused: use `password_env` or `password_file`.
    """
    with collected():
        config = read_table(MqttConfig, table, key)
    return config
