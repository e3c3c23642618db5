"""Consume what emoedge devices publish: typed, schema-validated messages.

    from edge.mqtt.client import subscribe

    with subscribe("mqtt://broker.lan", device="+") as sub:
        for msg in sub:
            if msg.kind == "events":
                print(msg.device, msg.event.previous, "->", msg.event.current)

`group="workers"` subscribes to the events and stats through the MQTT 5 shared subscription
`$share/workers/...`: the broker hands each event to ONE member of the group, so a fleet of
consumers splits the load. Availability and state (retained) still reach every member.
Payloads that do not validate against the schema are logged and counted, never delivered.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from edge.core.errors import BrokerError
from edge.mqtt.config import MqttConfig, parse_mqtt_config
from edge.mqtt.messages import (
    AVAILABILITY,
    KINDS,
    SCHEMA_OF,
    CommandResult,
    EmotionEvent,
    EmotionState,
    now_ms,
    parse_topic,
    problems,
    validator,
)
from edge.mqtt.publisher import Transient, connect, new_client

log = logging.getLogger("emoedge.client")

SHAREABLE = ("events", "stats")


@dataclass(frozen=True)
class Message:
    """One validated message: `payload` is the decoded JSON (a str for availability)."""

    topic: str
    device: str
    kind: str  # availability, state, events, stats or result
    payload: Any
    retained: bool
    received_ms: int

    @property
    def state(self) -> EmotionState:
        """The payload of a `state` message as an EmotionState."""
        return EmotionState.from_dict(self.payload)

    @property
    def event(self) -> EmotionEvent:
        """The payload of an `events` message as an EmotionEvent."""
        return EmotionEvent.from_dict(self.payload)

    @property
    def result(self) -> CommandResult:
        """The payload of a command `result` message as a CommandResult."""
        return CommandResult.from_dict(self.payload)

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "device": self.device,
            "kind": self.kind,
            "retained": self.retained,
            "received_ms": self.received_ms,
            "payload": self.payload,
        }


def decode(prefix: str, topic: str, raw: bytes, retained: bool) -> Message | str:
    """A Message, or the reason the topic or payload is not a valid emoedge message."""
    where = parse_topic(prefix, topic)
    if where is None:
        return f"not an emoedge topic: {topic}"
    device, kind = where
    try:
        payload = raw.decode() if kind == "availability" else json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        return f"{topic}: payload is not {'UTF-8' if kind == 'availability' else 'JSON'} ({error})"
    if kind == "availability":
        found = [] if payload in AVAILABILITY else [f"{payload[:40]!r} is not online/offline"]
    else:
        found = problems(validator(SCHEMA_OF[kind]), payload)
    if found:
        return f"{topic}: invalid payload: {'; '.join(found[:3])}"
    return Message(topic, device, kind, payload, retained, now_ms())


class Subscription:
    """A live subscription; iterate it, call `get()`, or pass `callback` to be called per message.

    Connects at construction: BrokerError when the broker refuses or cannot be reached. Later
    connection losses are retried with the configured backoff, subscriptions restored.
    """

    def __init__(
        self,
        config: MqttConfig,
        device: str = "+",
        *,
        kinds: tuple[str, ...] = KINDS,
        group: str | None = None,
        callback: Callable[[Message], None] | None = None,
    ) -> None:
        self.config = config
        self.invalid = 0
        self._callback = callback
        self._queue: queue.Queue[Message | None] = queue.Queue()
        self._closed = threading.Event()
        base = f"{config.prefix}/{device}"
        names = {k: f"{base}/set/+/result" if k == "result" else f"{base}/{k}" for k in kinds}
        self.topics = [
            f"$share/{group}/{name}" if group and kind in SHAREABLE else name
            for kind, name in names.items()
        ]
        self._client = new_client(config, config.client_id or "", reconnect=True)
        self._client.on_message = self._on_message
        try:
            connect(self._client, config, first=True)
        except Transient as error:
            raise BrokerError(str(error)) from error
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_connect = lambda c, *a: self._subscribe(c)
        self._client.on_disconnect = self._on_disconnect
        self._subscribe(self._client)
        if not self._subscribed.wait(config.connect_timeout_s):
            self.close()
            raise BrokerError(f"the broker at {config.url} did not confirm the subscription")

    def _subscribe(self, client: mqtt.Client) -> None:
        client.subscribe([(t, 1) for t in self.topics])

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       props: Any) -> None:  # fmt: skip
        if not self._closed.is_set():
            log.warning("lost the connection to %s (%s); reconnecting", self.config.url, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        result = decode(self.config.prefix, msg.topic, msg.payload, bool(msg.retain))
        if isinstance(result, str):
            self.invalid += 1
            log.warning("ignored: %s", result)
        elif self._callback:
            self._callback(result)
        else:
            self._queue.put(result)

    def get(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after `timeout` seconds or once closed."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def __iter__(self) -> Iterator[Message]:
        while (msg := self.get()) is not None:
            yield msg

    def close(self) -> None:
        """Disconnect; a loop over the subscription ends."""
        if not self._closed.is_set():
            self._closed.set()
            self._client.disconnect()
            self._client.loop_stop()
            self._queue.put(None)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscribe(
    broker_url: str = "mqtt://localhost:1883",
    device: str = "+",
    *,
    kinds: tuple[str, ...] = KINDS,
    group: str | None = None,
    callback: Callable[[Message], None] | None = None,
    **mqtt: Any,
) -> Subscription:
    """Subscribe to devices under `broker_url`; `mqtt` takes `[mqtt]` table keys (prefix,
    protocol, username, password_env, password_file, tls, ...)."""
    config = parse_mqtt_config({"url": broker_url, **mqtt})
    return Subscription(config, device, kinds=kinds, group=group, callback=callback)
