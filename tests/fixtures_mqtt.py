"""A real Mosquitto broker for the tests: three loopback listeners on random free ports.

- anonymous: `broker.url()`            (plain TCP, anyone may connect)
- password:  `broker.url("auth")`      (user `broker.username`, password `broker.password`)
- TLS:       `broker.url("tls")`       (server certificate for 127.0.0.1, not `localhost`,
             signed by `broker.certs.ca_file`; `broker.certs.rogue_ca_file` did NOT sign it)
- mutual TLS: `broker.url("mtls")`     (as TLS, and a client certificate signed by the CA is
             required: `broker.certs.client_cert` / `client_key`)

`broker.mqtt_table(kind)` gives an `[mqtt]` table for `edge.mqtt.config.parse_mqtt_config`.
`broker.kill()` (SIGKILL) and `broker.start()` stop and restart it on the same ports.
Fixtures: `mqtt_certs` (session), `mqtt_broker` (session, shared: never kill it) and
`private_broker` (one per test, persistent: kill and restart it freely). `MessageLog` records what a
real paho subscriber receives.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.core.labels import LABELS
from edge.mqtt.config import parse_mqtt_config
from edge.mqtt.messages import EmotionEvent, EmotionState
from edge.mqtt.mosquitto import HOST, MosquittoProcess, free_port, mosquitto_binary
from edge.mqtt.publisher import MqttPublisher


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; AssertionError after `timeout` s
    (a bound on a hang on a loaded machine, not a speed check)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def sample_state(seq: int, label: str = "happy", confidence: float = 0.9) -> EmotionState:
    """A present state whose probabilities put `confidence` on `label`."""
    rest = (1.0 - confidence) / (len(LABELS) - 1)
    probs = {name: confidence if name == label else rest for name in LABELS}
    ms = time.time_ns() // 1_000_000
    return EmotionState(label, confidence, probs, True, True, ms, seq, "test-model")


def sample_event(
    seq: int, previous: str | None = "neutral", current: str | None = "happy"
) -> EmotionEvent:
    """An emotion change previous -> current with sequence number `seq`."""
    ms = time.time_ns() // 1_000_000
    return EmotionEvent(previous, current, 1.5, 0.9, ms, seq, "test-model")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Certs:
    """A test CA, a server certificate it signed (for 127.0.0.1) and an unrelated CA."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    rogue_ca_file: Path
    client_cert: Path
    client_key: Path


def make_certs(folder: Path) -> Certs:
    """Generate the certificates with the openssl CLI."""
    folder.mkdir(parents=True, exist_ok=True)
    new_key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "rogue"):
        _openssl("req", "-x509", *new_key, "-days", "2", "-keyout", f"{ca}.key",
                 "-out", f"{ca}.crt", "-subj", f"/CN=emoedge test {ca}", cwd=folder)  # fmt: skip
    _openssl("req", *new_key, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=folder)  # fmt: skip
    _openssl("req", *new_key, "-keyout", "client.key", "-out", "client.csr",
             "-subj", "/CN=emoedge-test-client", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.crt",
                 cwd=folder)  # fmt: skip
    return Certs(
        folder / "ca.crt",
        folder / "server.crt",
        folder / "server.key",
        folder / "rogue.crt",
        folder / "client.crt",
        folder / "client.key",
    )


@dataclass
class Broker:
    """One mosquitto process with anonymous, password and TLS listeners on loopback."""

    folder: Path
    certs: Certs
    username: str = "emoedge"
    password: str = "s3cret-test-pass"
    persistent: bool = False
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ports = {kind: free_port() for kind in ("anon", "auth", "tls", "mtls")}
        passwd = self.folder / "passwd"
        passwd.touch()
        self.password_file = self.folder / "password.txt"
        self.password_file.write_text(self.password + "\n")
        subprocess.run(
            ["mosquitto_passwd", "-b", str(passwd), self.username, self.password],
            check=True,
            capture_output=True,
        )
        self.process = MosquittoProcess(
            self.folder,
            list(self.ports.values()),
            [
                "per_listener_settings true",
                *self._persistence(),
                f"listener {self.ports['anon']} {HOST}",
                "allow_anonymous true",
                f"listener {self.ports['auth']} {HOST}",
                "allow_anonymous false",
                f"password_file {passwd}",
                f"listener {self.ports['tls']} {HOST}",
                "allow_anonymous true",
                f"cafile {self.certs.ca_file}",
                f"certfile {self.certs.server_cert}",
                f"keyfile {self.certs.server_key}",
                f"listener {self.ports['mtls']} {HOST}",
                "allow_anonymous true",
                "require_certificate true",
                f"cafile {self.certs.ca_file}",
                f"certfile {self.certs.server_cert}",
                f"keyfile {self.certs.server_key}",
            ],
        )
        self.log = self.process.log

    def _persistence(self) -> list[str]:
        """Persistent: sessions, subscriptions and queued messages survive a kill (saved at
        every change), so a persistent-session subscriber misses nothing across a restart."""
        if not self.persistent:
            return ["persistence false"]
        return [
            "persistence true",
            f"persistence_location {self.folder}/",
            "autosave_on_changes true",
            "autosave_interval 1",
        ]

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        """The anonymous listener's port."""
        return self.ports["anon"]

    def url(self, kind: str = "anon") -> str:
        scheme = "mqtts" if kind in ("tls", "mtls") else "mqtt"
        return f"{scheme}://{HOST}:{self.ports[kind]}"

    def mqtt_table(self, kind: str = "anon", **overrides: Any) -> dict[str, Any]:
        """An `[mqtt]` table for this listener (the password listener's from a password file)."""
        table: dict[str, Any] = {"url": self.url(kind)}
        if kind == "auth":
            table |= {"username": self.username, "password_file": str(self.password_file)}
        if kind == "tls":
            table["tls"] = {"ca_file": str(self.certs.ca_file)}
        if kind == "mtls":
            certs = self.certs
            table["tls"] = {"ca_file": str(certs.ca_file), "certfile": str(certs.client_cert),
                            "keyfile": str(certs.client_key)}  # fmt: skip
        return table | overrides

    def start(self) -> None:
        """Start (or restart) mosquitto on the same ports; returns once every listener accepts."""
        self.process.start()

    def kill(self) -> None:
        """SIGKILL the broker: clients see the connection drop without a goodbye."""
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()


def wait_online(broker: Broker, device: str, base: str = "emoedge") -> None:
    """Wait for the device's retained `online`. The publisher sends it after subscribing to its
    commands on the same connection, so from then on the broker routes commands to it."""
    topic = f"{base}/{device}/availability"
    log = MessageLog(broker, topic)
    try:
        wait_for(lambda: b"online" in log.on(topic), what=f"{device} online")
    finally:
        log.close()


class MessageLog:
    """A real paho subscriber that records (topic, payload bytes, retain) as they arrive.

    It reconnects (and resubscribes) by itself; `session` names a persistent MQTT 3.1.1 session
    so that, on a `persistent` broker, messages published while it is away are kept for it.
    """

    def __init__(self, broker: Broker, topics: str | list[str], session: str = "") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=session,
            protocol=mqtt.MQTTv311 if session else mqtt.MQTTv5,
            clean_session=False if session else None,
        )
        self.client.reconnect_delay_set(0.1, 1)  # type: ignore[arg-type]
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        topic_list = [topics] if isinstance(topics, str) else topics
        self.client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topic_list])
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError(f"could not subscribe to {topic_list}")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def on(self, topic: str) -> list[bytes]:
        """Payloads received so far on `topic`, in arrival order."""
        with self._lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="session")
def mqtt_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if not shutil.which("openssl"):
        pytest.fail("openssl is not installed (make test installs it)")
    return make_certs(tmp_path_factory.mktemp("mqtt-certs"))


def _broker(folder: Path, certs: Certs, persistent: bool = False) -> Iterator[Broker]:
    mosquitto_binary()  # BrokerError naming the package when it is missing
    broker = Broker(folder, certs, persistent=persistent)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory, mqtt_certs: Certs) -> Iterator[Broker]:
    """One broker for the whole session; tests must not kill it (use `private_broker`)."""
    yield from _broker(tmp_path_factory.mktemp("mosquitto"), mqtt_certs)


@pytest.fixture
def private_broker(tmp_path: Path, mqtt_certs: Certs) -> Iterator[Broker]:
    """A broker of this test's own, to kill and restart mid-test; it persists its state."""
    yield from _broker(tmp_path / "mosquitto", mqtt_certs, persistent=True)


@pytest.fixture
def make_publisher() -> Iterator[Callable[..., MqttPublisher]]:
    """`make_publisher(broker, device="dev", kind="anon", **mqtt_keys)`: a started
    MqttPublisher on that listener (stopped at the end of the test)."""
    started: list[MqttPublisher] = []

    def make(broker: Broker, device: str = "dev", kind: str = "anon", **keys: Any) -> MqttPublisher:
        publisher = MqttPublisher(
            parse_mqtt_config(broker.mqtt_table(kind, **keys)), device, "test-model"
        )
        publisher.start()
        started.append(publisher)
        return publisher

    yield make
    for publisher in started:
        publisher.stop()
