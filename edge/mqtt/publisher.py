"""The one module that owns the MQTT connection (paho-mqtt 2.x): `MqttPublisher`.

The daemon hands it `EmotionState`, `EmotionEvent` and stats dicts; nothing else touches a
client. Guarantees:

- `availability` is retained, `offline` is the last will and is published on `stop()`;
  `state` is retained; `events` are not; Home Assistant discovery is retained and re-announced
  whenever `<discovery_prefix>/status` says `online` and after every reconnect.
- Events go through a bounded FIFO queue: none is lost while the broker is away as long as the
  queue holds (QoS >= 1 messages are kept until the broker acknowledges them, and re-sent in
  order on a fresh connection); beyond the bound the oldest are dropped and counted. State and
  stats are "latest value" topics: only the newest is kept. A state never overtakes an event
  published before it (the daemon publishes a cycle's event, then the state it led to).
- Command results have their own small queue and send budget, behind events: a flood of
  commands never delays an event. Incoming commands are rate-limited per topic and in total;
  the ones over the limit get no result and are counted (`throttled_commands`).
- At most `max_rate_per_topic` messages per second per topic; the last state is re-sent every
  `heartbeat_s` when nothing newer came.
- No exception escapes a paho callback (one would end paho's network thread); `problem()` says
  when the connection machinery is dead anyway, so the daemon can exit and be restarted.
- Wrong credentials or an untrusted certificate raise `BrokerError` from `start()` (and from
  the next publish call when they appear on a later reconnect); an unreachable broker is
  retried with capped exponential backoff, logged at every attempt.
"""

from __future__ import annotations

import functools
import itertools
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge import __version__
from edge.core.errors import BrokerError
from edge.core.labels import LABELS
from edge.mqtt.config import MqttConfig
from edge.mqtt.messages import (
    STATES,
    CommandHandler,
    CommandResult,
    EmotionEvent,
    EmotionState,
    Topics,
    encode,
    parse_command,
    stamped,
)
from edge.mqtt.ratelimit import RateLimiter

log = logging.getLogger("emoedge.mqtt")

# A session shorter than FLAP_S, FLAP_LIMIT times in a row with the broker reachable in
# between: it keeps closing the connection it accepted (another client with our id, or a
# publish its ACL refuses). A broker that was down in between does not count.
FLAP_S = 2.0
FLAP_LIMIT = 5
# CONNACK reason codes that retrying cannot fix: client id, credentials, authorisation, ban.
FATAL_CONNACK = {133, 134, 135, 138, 140}
INFLIGHT_WINDOW = 20
STOP_FLUSH_S = 5.0
MAX_RATE_SLOTS = 64
# Command results: at most RESULT_QUEUE waiting (oldest dropped), RESULT_RATE sent per second.
RESULT_QUEUE = 32
RESULT_RATE = 10.0
# Incoming commands: per topic COMMAND_RATE/s in bursts of COMMAND_BURST, COMMAND_TOTAL_RATE/s
# over all topics together.
COMMAND_RATE, COMMAND_BURST, COMMAND_TOTAL_RATE = 5.0, 10.0, 20.0

F = TypeVar("F", bound=Callable[..., None])


def guarded(callback: F) -> F:
    """`callback` with every exception logged and swallowed: paho calls it on its network
    thread, and an exception escaping there ends that thread silently."""

    @functools.wraps(callback)
    def run(*args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("MQTT callback %s failed", callback.__name__)

    return run  # type: ignore[return-value]


class Transient(Exception):
    """A connection attempt failed in a way that retrying can fix."""


class Unreachable(Transient):
    """No broker answered (refused, unresolvable, silent): it is down or away."""


@dataclass
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    resend: bool = True  # kept until acknowledged and re-sent after a reconnect
    order: int = 0  # events and states: when it was published, relative to the others


def new_client(
    config: MqttConfig, client_id: str, will: _Outgoing | None = None, reconnect: bool = False
) -> mqtt.Client:
    """A paho client configured from `config` (protocol, credentials, TLS, last will).

    With `reconnect` paho's network thread reconnects with the configured backoff (fine for
    consumers); the publisher reconnects itself with a fresh client to keep its queue in order.
    """
    v5 = config.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else True,
        reconnect_on_failure=reconnect,
    )
    client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)  # type: ignore[arg-type]
    client.suppress_exceptions = True  # a backstop: our callbacks are `guarded` already
    if log.isEnabledFor(logging.DEBUG):  # paho's own log is noise unless debugging
        client.enable_logger(logging.getLogger("emoedge.mqtt.paho"))
    if will:
        client.will_set(will.topic, will.payload, will.qos, will.retain)
    if config.username:
        client.username_pw_set(config.username, config.password())
    if config.tls:
        tls = config.tls
        client.tls_set(ca_certs=tls.ca_file, certfile=tls.certfile, keyfile=tls.keyfile)
        client.tls_insecure_set(not tls.check_hostname)
    return client


def connect(client: mqtt.Client, config: MqttConfig, first: bool = False) -> None:
    """Connect and start the network thread; returns once the broker accepted.

    Raises BrokerError for what retrying cannot fix (credentials, certificate, authorisation)
    and `Transient` for the rest (refused, unreachable, timeout). On the `first` connection a
    TLS connection closed before the broker answered is also a BrokerError: it is how a broker
    refuses a client certificate under TLS 1.3 (the alert saying so does not always arrive).
    """
    where = config.url
    accepted = threading.Event()
    outcome: list[Any] = []

    @guarded
    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        outcome.append(reason)
        accepted.set()

    @guarded
    def on_disconnect(c: mqtt.Client, userdata: Any, *args: Any) -> None:
        outcome.append(None)  # closed before the broker answered
        accepted.set()

    socket_errors: list[str] = []  # a TLS alert after the handshake: client certificate refused

    @guarded
    def on_log(c: mqtt.Client, userdata: Any, level: int, line: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            socket_errors.append(line)

    client.on_connect = on_connect
    owners_on_disconnect = client.on_disconnect
    client.on_disconnect = on_disconnect
    client.on_log = on_log
    try:
        client.connect(config.host, config.port, config.keepalive)
    except ssl.SSLCertVerificationError as error:
        raise BrokerError(
            f"TLS certificate of the broker at {where} is not trusted: {error.verify_message}"
            f"{f' (CA file {config.tls.ca_file})' if config.tls and config.tls.ca_file else ''}"
        ) from error
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as error:
        raise Transient(f"TLS connection to {where} closed during the handshake") from error
    except ssl.SSLError as error:
        raise BrokerError(f"TLS handshake with the broker at {where} failed: {error}") from error
    except socket.gaierror as error:
        raise Unreachable(f"cannot resolve broker host {config.host!r} ({error})") from error
    except OSError as error:
        raise Unreachable(f"cannot connect to the broker at {where} ({error})") from error
    client.loop_start()
    if not accepted.wait(config.connect_timeout_s):
        _close(client)
        raise Unreachable(f"no answer from the broker at {where} in {config.connect_timeout_s} s")
    client.on_log = None
    reason = outcome[0]
    if reason is not None and not reason.is_failure:
        client.on_disconnect = owners_on_disconnect
        if client.is_connected():
            return
        _close(client)
        raise Transient(f"the broker at {where} closed the connection right after accepting it")
    _close(client)
    if reason is None:
        alert = next((e for e in socket_errors if "alert" in e.lower()), None)
        if config.tls and (alert or first):
            mine = config.tls.certfile or "none configured"
            why = alert.split("] ")[-1] if alert else "closed the connection before answering"
            raise BrokerError(
                f"the broker at {where} refused the TLS connection after the handshake ({why}); "
                f"does it require a client certificate it accepts? (client certificate: {mine})"
            )
        raise Transient(f"the broker at {where} closed the connection before answering")
    code = reason.value
    if code in FATAL_CONNACK:
        who = f" as user {config.username!r}" if config.username else " anonymously"
        raise BrokerError(f"the broker at {where} refused the connection{who}: {reason}")
    raise Transient(f"the broker at {where} refused the connection: {reason}")


def _close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def discovery_configs(
    topics: Topics, discovery_prefix: str, model_id: str, qos: int
) -> dict[str, dict[str, Any]]:
    """Home Assistant MQTT discovery: an emotion sensor (probabilities as attributes) and a
    confidence sensor, both tied to the availability topic. Keyed by config topic."""
    node = f"emoedge_{topics.device}"
    common = {
        "state_topic": topics.state,
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": qos,
        "device": {
            "identifiers": [node],
            "name": f"emoedge {topics.device}",
            "manufacturer": "emoedge",
            "model": model_id,
            "sw_version": __version__,
        },
        "origin": {"name": "emoedge", "sw_version": __version__},
    }
    emotion = {
        "name": "Emotion",
        "unique_id": f"{node}_emotion",
        "value_template": "{{ value_json.label if value_json.label else value_json.state }}",
        "json_attributes_topic": topics.state,
        "json_attributes_template": ATTRIBUTES_TEMPLATE,
        "device_class": "enum",
        "options": [*LABELS, *(s for s in STATES if s != "present")],
        "icon": "mdi:emoticon-outline",
        **common,
    }
    confidence = {
        "name": "Emotion confidence",
        "unique_id": f"{node}_confidence",
        "value_template": "{{ (value_json.confidence * 100) | round(1) }}",
        "unit_of_measurement": "%",
        "state_class": "measurement",
        "icon": "mdi:gauge",
        **common,
    }
    base = f"{discovery_prefix}/sensor/{node}"
    return {f"{base}/emotion/config": emotion, f"{base}/confidence/config": confidence}


# Home Assistant attributes of the emotion sensor: the probabilities, and what each modality said
# on its own with the fusion mode (so an automation can see what drove the result).
ATTRIBUTES_TEMPLATE = (
    "{% set own = value_json.by_modality or {} %}"
    "{{ dict(value_json.probabilities,"
    " face=(own.face.label if own.face else none),"
    " face_confidence=(own.face.confidence if own.face else none),"
    " voice=(own.voice.label if own.voice else none),"
    " voice_confidence=(own.voice.confidence if own.voice else none),"
    " fusion=value_json.fusion) | tojson }}"
)


def _delivered(info: mqtt.MQTTMessageInfo) -> bool:
    """True once the broker has the message; False while it is in flight, and for a publish
    that paho refused as the connection dropped (paho's `is_published` raises then)."""
    return info.rc == mqtt.MQTT_ERR_SUCCESS and info.is_published()


class MqttPublisher:
    """Publishes one device's availability, state, events and stats; receives its commands.

    Implements `edge.mqtt.messages.Publisher`. Thread-safe: publish_* only enqueue and return.
    """

    def __init__(self, config: MqttConfig, device_id: str, model_id: str) -> None:
        self.config = config
        self.topics = Topics(config.prefix, device_id)
        self.model_id = model_id
        self.client_id = config.client_id or f"emoedge-{device_id}"
        config.password()  # a missing secret is a ConfigError now, not in a thread later
        self._discovery = (
            discovery_configs(self.topics, config.discovery_prefix, model_id, config.qos.state)
            if config.discovery
            else {}
        )
        self._ha_status = f"{config.discovery_prefix}/status"
        self._handler: CommandHandler | None = None
        self._cond = threading.Condition()
        self._queue: deque[_Outgoing] = deque()
        self._results: deque[_Outgoing] = deque(maxlen=RESULT_QUEUE)
        self._result_slot = 0.0  # monotonic time the next result may go out
        self._incoming = RateLimiter(COMMAND_RATE, COMMAND_BURST, COMMAND_TOTAL_RATE)
        self._client: mqtt.Client | None = None  # the connected one, for `problem()`
        self._inflight: deque[tuple[_Outgoing, mqtt.MQTTMessageInfo]] = deque()
        self._order = itertools.count(1)
        self._latest: dict[str, _Outgoing] = {}  # state and stats: newest not yet sent
        self._last_state: _Outgoing | None = None
        self._next_ok: dict[str, float] = {}  # topic -> monotonic time of its next slot
        self._state_sent_at = 0.0
        self._announce = False
        self._connected = False
        self._stopping = False
        self._fatal: BrokerError | None = None
        self._thread: threading.Thread | None = None
        self._counts = dict(
            sent=0,
            dropped=0,
            reconnects=0,
            rejected_commands=0,
            throttled_commands=0,
            dropped_results=0,
        )

    # -- the Publisher protocol ---------------------------------------------------------

    def start(self) -> None:
        """Connect once synchronously: BrokerError for credentials/certificate problems; an
        unreachable broker is logged and retried in the background."""
        client = self._new_client()
        try:
            connect(client, self.config, first=True)
        except Transient as error:
            log.warning("%s; retrying in the background", error)
            client = None
        if client:
            log.info("connected to %s as %s", self.config.url, self.client_id)
        self._thread = threading.Thread(
            target=self._run, args=(client,), name=f"mqtt-{self.topics.device}", daemon=True
        )
        self._thread.start()

    def publish_state(self, state: EmotionState) -> None:
        payload = encode(state.to_dict())
        with self._cond:
            self._check_fatal()
            msg = _Outgoing(self.topics.state, payload, self.config.qos.state, True)
            msg.order = next(self._order)
            self._last_state = msg
            self._latest[msg.topic] = msg
            self._cond.notify_all()

    def publish_event(self, event: EmotionEvent) -> None:
        self._enqueue(
            _Outgoing(self.topics.events, encode(event.to_dict()), self.config.qos.events)
        )

    def publish_stats(self, stats: dict[str, Any]) -> None:
        with self._cond:
            self._check_fatal()
            body = stamped({**stats, "model_id": self.model_id, "mqtt": self._mqtt_stats()})
            msg = _Outgoing(self.topics.stats, encode(body), self.config.qos.stats)
            self._latest[msg.topic] = msg
            self._cond.notify_all()

    def set_command_handler(self, handler: CommandHandler) -> None:
        self._handler = handler

    def stop(self) -> None:
        """Send what is queued (up to a few seconds), publish `offline`, disconnect."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread:
            self._thread.join(STOP_FLUSH_S + self.config.connect_timeout_s)
            self._thread = None

    # -- what the daemon and the bench may read -------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def counters(self) -> dict[str, Any]:
        """sent, queued, dropped, reconnects, rejected_commands, throttled_commands,
        dropped_results and connected."""
        with self._cond:
            return self._mqtt_stats()

    def problem(self) -> str | None:
        """Why this publisher can no longer work (its connection thread or paho's network
        thread died), or None while it is healthy or still reconnecting."""
        if self._thread is not None and not self._thread.is_alive() and self._fatal is None:
            return "the MQTT connection thread has died"
        client = self._client
        # paho has no public accessor for its network thread; `_thread` is None once stopped.
        network = getattr(client, "_thread", None) if client is not None else None
        if client is not None and self._connected and not (network and network.is_alive()):
            return "the MQTT network thread has died"
        return None

    # -- internals ------------------------------------------------------------------------

    def _mqtt_stats(self) -> dict[str, Any]:
        return {"connected": self._connected, "queued": len(self._queue), **self._counts}

    def _check_fatal(self) -> None:
        if self._fatal:
            raise self._fatal

    def _enqueue(self, msg: _Outgoing) -> None:
        with self._cond:
            self._check_fatal()
            if len(self._queue) >= self.config.queue_size:
                self._queue.popleft()
                self._counts["dropped"] += 1
                if self._counts["dropped"] == 1 or self._counts["dropped"] % 100 == 0:
                    log.warning(
                        "offline queue full (%d): dropped %d oldest messages so far",
                        self.config.queue_size,
                        self._counts["dropped"],
                    )
            msg.order = next(self._order)
            self._queue.append(msg)
            self._cond.notify_all()

    def _new_client(self) -> mqtt.Client:
        will = _Outgoing(self.topics.availability, b"offline", 1, True)
        client = new_client(self.config, self.client_id, will)
        client.on_publish = guarded(self._on_publish)
        client.on_message = guarded(self._on_message)
        client.on_disconnect = guarded(self._on_disconnect)
        return client

    def _on_publish(self, *args: Any) -> None:
        """An acknowledgement matters to the sender only when it waits for window or a flush."""
        with self._cond:
            if self._stopping or len(self._inflight) >= INFLIGHT_WINDOW:
                self._cond.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, *args: Any) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    def _run(self, client: mqtt.Client | None) -> None:
        """Connection manager: (re)connect with capped exponential backoff, then pump."""
        delay = self.config.reconnect_min_s
        flaps = 0
        while True:
            if client is None:
                if self._stopping:
                    break
                client = self._new_client()
                try:
                    connect(client, self.config)
                except Transient as error:
                    if isinstance(error, Unreachable):
                        flaps = 0  # the broker went away: its closing us was no refusal
                    log.warning("%s; next attempt in %.1f s", error, delay)
                    client = None
                    with self._cond:
                        self._cond.wait_for(lambda: self._stopping, delay)
                    delay = min(delay * 2, self.config.reconnect_max_s)
                    continue
                except BrokerError as error:
                    log.error("%s; giving up", error)
                    with self._cond:
                        self._fatal = error
                    return
                with self._cond:
                    self._counts["reconnects"] += 1
                log.info("reconnected to %s", self.config.url)
            delay = self.config.reconnect_min_s
            connected_at = time.monotonic()
            done = self._serve(client)
            client = None
            if done:
                return
            flaps = flaps + 1 if time.monotonic() - connected_at < FLAP_S else 0
            if flaps >= FLAP_LIMIT:
                error = self._flapping(flaps)
                log.error("%s; giving up", error)
                with self._cond:
                    self._fatal = error
                return
        with self._cond:
            if self._queue:
                log.warning("stopped while offline: %d queued messages not sent", len(self._queue))

    def _flapping(self, flaps: int) -> BrokerError:
        return BrokerError(
            f"the broker at {self.config.url} closed the connection within {FLAP_S:g} s of "
            f"accepting it {flaps} times in a row: another client is using the client id "
            f"{self.client_id!r} (a second daemon with device_id {self.topics.device!r}? give "
            "each its own), or the broker refuses what this device publishes (its ACL for "
            f"{self.topics.base}/#)"
        )

    def _serve(self, client: mqtt.Client) -> bool:
        """Subscribe, announce, then send until the connection drops (False) or we stop (True)."""
        client.on_connect = lambda *a: None
        client.subscribe(
            [(self.topics.commands, 1)] + ([(self._ha_status, 1)] if self._discovery else [])
        )
        with self._cond:
            self._connected = client.is_connected()
            self._client = client
            self._announce = True
        stopped = self._pump(client)
        self._client = None
        if stopped:
            info = client.publish(self.topics.availability, b"offline", 1, True)
            info.wait_for_publish(STOP_FLUSH_S)
            _close(client)
            log.info("disconnected from %s", self.config.url)
            return True
        client.loop_stop()
        with self._cond:
            self._connected = False
            unacked = [m for m, info in self._inflight if not _delivered(info)]
            self._inflight.clear()
            resend = [m for m in unacked if m.topic not in (self.topics.state, self.topics.stats)]
            self._queue.extendleft(reversed(resend))
        log.warning(
            "lost the connection to %s; %d messages queued", self.config.url, len(self._queue)
        )
        return False

    def _pump(self, client: mqtt.Client) -> bool:
        """Send queued messages while connected; True once stopping and everything is out."""
        stop_by: float | None = None
        while True:
            with self._cond:
                msg = None
                while msg is None:
                    if not (self._connected and client.is_connected()):
                        return False
                    while self._inflight and _delivered(self._inflight[0][1]):
                        self._inflight.popleft()
                    if self._stopping:
                        stop_by = stop_by or time.monotonic() + STOP_FLUSH_S
                        idle = not (self._queue or self._inflight or self._latest or self._results)
                        if idle or time.monotonic() > stop_by:
                            return True
                    if self._announce:
                        self._announce = False
                        break
                    msg, wait = self._next_message()
                    if msg is None:
                        msg, wait = self._next_result(wait)
                    if msg is None:
                        self._cond.wait(wait)
            if msg is None:
                self._publish_announcement(client)
                continue
            info = client.publish(msg.topic, msg.payload, msg.qos, msg.retain)
            with self._cond:
                self._counts["sent"] += 1
                if msg.qos > 0 and msg.resend:
                    self._inflight.append((msg, info))

    def _next_message(self) -> tuple[_Outgoing | None, float]:
        """The next message whose topic has a free rate slot, or (None, seconds to wait)."""
        now = time.monotonic()
        if self._last_state and now - self._state_sent_at >= self.config.heartbeat_s:
            self._latest.setdefault(self._last_state.topic, self._last_state)
        candidates = list(self._latest.values())
        if self._queue and len(self._inflight) < INFLIGHT_WINDOW:
            candidates.append(self._queue[0])
        wait = 1.0
        for msg in candidates:
            if msg.topic == self.topics.state and self._queue and self._queue[0].order < msg.order:
                continue  # an event published before this state is still queued: it goes first
            slot = self._next_ok.get(msg.topic, 0.0)
            if slot > now:
                wait = min(wait, slot - now)
                continue
            if len(self._next_ok) > MAX_RATE_SLOTS:  # e.g. results of many unknown commands
                self._next_ok = {t: at for t, at in self._next_ok.items() if at > now}
            self._next_ok[msg.topic] = max(slot, now) + 1.0 / self.config.max_rate_per_topic
            if self._latest.get(msg.topic) is msg:
                del self._latest[msg.topic]
            else:
                self._queue.popleft()
            if msg.topic == self.topics.state:
                self._state_sent_at = now
            return msg, 0.0
        if self._last_state and self._last_state.topic not in self._latest:
            wait = min(wait, self._state_sent_at + self.config.heartbeat_s - now)
        return None, max(wait, 0.001)

    def _next_result(self, wait: float) -> tuple[_Outgoing | None, float]:
        """The oldest command result when its budget allows one, else (None, `wait` or the
        time to the next result slot). Results are not re-sent after a reconnect."""
        if not self._results:
            return None, wait
        now = time.monotonic()
        if self._result_slot > now:
            return None, min(wait, self._result_slot - now)
        self._result_slot = now + 1.0 / RESULT_RATE
        return self._results.popleft(), 0.0

    def _publish_announcement(self, client: mqtt.Client) -> None:
        """Availability online, Home Assistant discovery and the last state (all retained)."""
        client.publish(self.topics.availability, b"online", 1, True)
        for topic, config in self._discovery.items():
            client.publish(topic, encode(config), 1, True)
        with self._cond:
            if self._last_state:
                self._latest[self._last_state.topic] = self._last_state

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self._ha_status:
            if msg.payload == b"online":
                log.info("Home Assistant is online: announcing discovery again")
                self._wake_announce()
            return
        if not self._incoming.allow(msg.topic):
            with self._cond:
                self._counts["throttled_commands"] += 1
                throttled = self._counts["throttled_commands"]
            if throttled == 1 or throttled % 100 == 0:
                log.warning(
                    "too many commands: %d ignored so far (last on %s)", throttled, msg.topic
                )
            return
        name = msg.topic.rsplit("/", 1)[-1]
        value, reason = parse_command(name, msg.payload)
        if reason:
            result = CommandResult(name, False, reason)
        elif self._handler is None:
            result = CommandResult(name, False, "this device takes no commands")
        else:
            result = self._handle(name, value)
        if not result.ok:
            with self._cond:
                self._counts["rejected_commands"] += 1
            log.warning("command %s rejected: %s", msg.topic, result.message)
        else:
            log.info("command %s applied: %s", msg.topic, result.message or value)
        body = result.to_dict()
        with self._cond:
            if len(self._results) == RESULT_QUEUE:
                self._counts["dropped_results"] += 1
            self._results.append(_Outgoing(self.topics.result(name), encode(body), 1, resend=False))
            self._cond.notify_all()

    def _handle(self, name: str, value: Any) -> CommandResult:
        assert self._handler is not None
        try:
            return self._handler(name, value)
        except Exception as error:  # a handler bug must not take the connection down
            log.exception("command handler failed on %s", name)
            return CommandResult(name, False, f"handler failed: {error}")

    def _wake_announce(self) -> None:
        with self._cond:
            self._announce = True
            self._cond.notify_all()
