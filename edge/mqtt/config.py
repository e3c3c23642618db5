"""The `[mqtt]` configuration table: a typed, validated `MqttConfig`.

Errors name the key (e.g. `mqtt.port`), the value and what is allowed. Secrets never live in
the configuration itself: the password comes from an environment variable or a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.core.config_table import ConfigTable, collected, report
from edge.core.errors import ConfigError

PROTOCOLS = ("3.1.1", "5")
SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}
DEFAULT_PORT = {False: 1883, True: 8883}


@dataclass(frozen=True)
class TlsConfig:
    """TLS settings; no `ca_file` means the system's trusted certificates."""

    ca_file: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    check_hostname: bool = True


@dataclass(frozen=True)
class QosConfig:
    """QoS per topic kind (0, 1 or 2)."""

    state: int = 1
    events: int = 1
    stats: int = 0


@dataclass(frozen=True)
class MqttConfig:
    """Where and how the daemon publishes. `tls` None means a plain TCP connection."""

    host: str = "localhost"
    port: int = 1883
    protocol: str = "5"
    client_id: str | None = None
    prefix: str = "emoedge"
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    tls: TlsConfig | None = None
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    qos: QosConfig = field(default_factory=QosConfig)
    keepalive: int = 30
    queue_size: int = 1000
    max_rate_per_topic: float = 20.0
    heartbeat_s: float = 60.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 1.0
    connect_timeout_s: float = 10.0

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


def _check_keys(table: dict[str, Any], key: str, allowed: set[str]) -> None:
    ConfigTable(table, key).check_keys(allowed)


def _get(
    table: dict[str, Any],
    key: str,
    name: str,
    kind: type | tuple[type, ...],
    default: Any,
    check: Callable[[Any], bool] = lambda v: True,
    allowed: str = "",
) -> Any:
    """`table[name]` checked for type and range; errors name `key.name`, the value and the rule."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return ConfigTable(table, key).get(name, kinds, default, check, allowed)


def _topic_level(v: str) -> bool:
    return bool(v) and not any(c in v for c in "#+\0") and not v.startswith("/")


def _parse_url(url: str, key: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ConfigError(
            f"{key}.url: invalid value {url!r}; allowed: mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
        )
    if parts.username or parts.password:
        raise ConfigError(
            f"{key}.url: credentials do not belong in the URL; "
            f"use {key}.username with {key}.password_env or {key}.password_file"
        )
    try:
        port = parts.port
    except ValueError as error:
        raise ConfigError(f"{key}.url: invalid port in {url!r} ({error})") from error
    tls = SCHEMES[parts.scheme]
    return parts.hostname, port or DEFAULT_PORT[tls], tls


def _parse_tls(value: Any, key: str) -> TlsConfig | None:
    if isinstance(value, bool):
        return TlsConfig() if value else None
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: invalid value {value!r}; allowed: true, false or a table")
    _check_keys(value, key, {f.name for f in fields(TlsConfig)})
    files = {}
    for name in ("ca_file", "certfile", "keyfile"):
        path = _get(value, key, name, str, None)
        if path is not None and not Path(path).is_file():
            report(f"{key}.{name}: file not found: {path!r}")
        files[name] = path
    if (files["certfile"] is None) != (files["keyfile"] is None):
        raise ConfigError(f"{key}: certfile and keyfile must be given together")
    check = _get(value, key, "check_hostname", bool, True)
    return TlsConfig(check_hostname=check, **files)


def _parse_qos(value: Any, key: str) -> QosConfig:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: invalid value {value!r}; allowed: a table of state/events/stats")
    _check_keys(value, key, {f.name for f in fields(QosConfig)})
    d = QosConfig()
    return QosConfig(
        **{
            f.name: _get(
                value, key, f.name, int, getattr(d, f.name), lambda v: v in (0, 1, 2), "0, 1 or 2"
            )
            for f in fields(QosConfig)
        }
    )


def parse_mqtt_config(table: dict[str, Any], key: str = "mqtt") -> MqttConfig:
    """Validate the `[mqtt]` table; ConfigError names the key, the value and what is allowed
    (every problem of the table at once).

    The broker is given either as `url` (mqtt://host:port, mqtts:// turns TLS on) or as
    `host`/`port`. A plain `password` key is refused: use `password_env` or `password_file`.
    """
    with collected():
        config = _parse_mqtt(table, key)
    return config


def _seconds(table: dict[str, Any], key: str, name: str, default: float, low: float,
             high: float) -> float:  # fmt: skip
    return ConfigTable(table, key).number(name, default, low, high, " seconds")


def _parse_mqtt(table: dict[str, Any], key: str) -> MqttConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{key}: expected a table, got {table!r}")
    if "password" in table:
        raise ConfigError(
            f"{key}.password: passwords are not read from the configuration; "
            f"set {key}.password_env (an environment variable) or {key}.password_file"
        )
    allowed = {f.name for f in fields(MqttConfig)} | {"url"}
    _check_keys(table, key, allowed)
    d = MqttConfig()

    url_tls = False
    host, port = d.host, None
    if "url" in table:
        if "host" in table or "port" in table:
            raise ConfigError(f"{key}.url: give either url or host/port, not both")
        host, port, url_tls = _parse_url(_get(table, key, "url", str, ""), key)
    host = _get(table, key, "host", str, host, bool, "a host name or address")
    tls = _parse_tls(table.get("tls", url_tls), f"{key}.tls")
    port = _get(
        table,
        key,
        "port",
        int,
        port or DEFAULT_PORT[tls is not None],
        lambda v: 0 < v < 65536,
        "1..65535",
    )

    username = _get(table, key, "username", str, None, bool, "a non-empty string")
    password_env = _get(table, key, "password_env", str, None, bool, "a variable name")
    password_file = _get(table, key, "password_file", str, None, bool, "a file path")
    if password_env and password_file:
        report(f"{key}.password_env: give password_env or password_file, not both")
    if (password_env or password_file) and not username:
        report(f"{key}.username: required when a password is configured")

    reconnect_min = _seconds(table, key, "reconnect_min_s", d.reconnect_min_s, 0.01, 300.0)
    reconnect_max = _get(
        table,
        key,
        "reconnect_max_s",
        (int, float),
        d.reconnect_max_s,
        lambda v: reconnect_min <= v <= 3600,
        f"a number in [reconnect_min_s ({reconnect_min}), 3600] seconds",
    )
    return MqttConfig(
        host=host,
        port=port,
        protocol=str(
            _get(
                table,
                key,
                "protocol",
                (str, int),
                d.protocol,
                lambda v: str(v) in PROTOCOLS,
                '"3.1.1" or "5"',
            )
        ),
        client_id=_get(
            table, key, "client_id", str, None, lambda v: 0 < len(v) <= 128, "1..128 characters"
        ),
        prefix=_get(
            table,
            key,
            "prefix",
            str,
            d.prefix,
            _topic_level,
            "a topic prefix without #, + or a leading /",
        ).rstrip("/"),
        discovery=_get(table, key, "discovery", bool, d.discovery),
        discovery_prefix=_get(
            table,
            key,
            "discovery_prefix",
            str,
            d.discovery_prefix,
            _topic_level,
            "a topic prefix without #, + or a leading /",
        ),
        tls=tls,
        username=username,
        password_env=password_env,
        password_file=password_file,
        qos=_parse_qos(table.get("qos", {}), f"{key}.qos"),
        keepalive=_get(
            table, key, "keepalive", int, d.keepalive, lambda v: 5 <= v <= 65535, "5..65535 seconds"
        ),
        queue_size=_get(
            table,
            key,
            "queue_size",
            int,
            d.queue_size,
            lambda v: 1 <= v <= 10**6,
            "1..1000000 messages",
        ),
        max_rate_per_topic=ConfigTable(table, key).number(
            "max_rate_per_topic", d.max_rate_per_topic, 0.01, 10000.0, " messages per second"
        ),
        heartbeat_s=_seconds(table, key, "heartbeat_s", d.heartbeat_s, 0.1, 86400.0),
        reconnect_min_s=reconnect_min,
        reconnect_max_s=float(reconnect_max),
        connect_timeout_s=_seconds(
            table, key, "connect_timeout_s", d.connect_timeout_s, 0.1, 600.0
        ),
    )
