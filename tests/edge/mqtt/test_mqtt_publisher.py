"""MqttPublisher against a real Mosquitto: topics, retained messages, schemas, Home Assistant
discovery, heartbeat and rate limit."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import paho.mqtt.publish as mqtt_publish
import pytest

from edge.mqtt.client import decode
from edge.mqtt.messages import CommandResult, EmotionState, Topics, problems, validator
from tests.conftest import REPO
from tests.fixtures_mqtt import MessageLog, sample_event, sample_state, wait_for, wait_online

FAST = {"max_rate_per_topic": 1000}
SCHEMA_BY_KIND = {"state": "state", "events": "event", "stats": "stats", "result": "command_result"}


def test_late_subscriber_sees_retained_availability_and_state(mqtt_broker, make_publisher) -> None:
    early = MessageLog(mqtt_broker, "emoedge/late/#")
    publisher = make_publisher(mqtt_broker, "late", **FAST)
    publisher.publish_state(sample_state(7, "sad"))
    publisher.publish_event(sample_event(7, "happy", "sad"))
    wait_for(lambda: early.on("emoedge/late/events"), what="state and event at the broker")
    early.close()
    late = MessageLog(mqtt_broker, "emoedge/late/#")
    try:
        topics = Topics("emoedge", "late")
        wait_for(lambda: late.on(topics.state), what="retained state")
        retained = {t: (p, r) for t, p, r in late.messages}
        assert retained[topics.availability] == (b"online", True)
        state, was_retained = retained[topics.state]
        assert was_retained and json.loads(state)["label"] == "sad"
        assert topics.events not in retained  # events are not retained
    finally:
        late.close()


def test_every_published_payload_validates_against_its_schema(mqtt_broker, make_publisher) -> None:
    log = MessageLog(mqtt_broker, ["emoedge/schemas/#", "homeassistant/#"])
    publisher = make_publisher(mqtt_broker, "schemas", **FAST)
    publisher.set_command_handler(lambda name, value: CommandResult(name, True, "ok", value))
    publisher.publish_state(sample_state(1))
    publisher.publish_state(EmotionState.blank("absent", 1, 2, "test-model"))
    publisher.publish_event(sample_event(2, "happy", None))
    publisher.publish_stats({"fps": 4.5, "latency_ms": {"p50": 12.0}})
    wait_online(mqtt_broker, "schemas")  # a command sent before the subscription is lost
    mqtt_publish.single("emoedge/schemas/set/rate", '{"hz": 2}', qos=1, port=mqtt_broker.port)
    mqtt_publish.single("emoedge/schemas/set/rate", "oops", qos=1, port=mqtt_broker.port)
    wait_for(lambda: len(log.on("emoedge/schemas/set/rate/result")) == 2, what="two results")
    wait_for(lambda: log.on("emoedge/schemas/stats"), what="stats")
    checked = set()
    for topic, payload, retained in log.messages:
        if topic.startswith("homeassistant/"):
            assert not problems(validator("discovery"), json.loads(payload)), topic
            checked.add("discovery")
            continue
        if topic.endswith("/set/rate"):
            continue  # what the test itself sent
        message = decode("emoedge", topic, payload, retained)
        assert not isinstance(message, str), message
        if message.kind in SCHEMA_BY_KIND:
            assert not problems(validator(SCHEMA_BY_KIND[message.kind]), message.payload)
        checked.add(message.kind)
    assert checked == {"availability", "state", "events", "stats", "result", "discovery"}


def test_schemas_reject_what_subscribers_must_not_trust() -> None:
    good = json.loads(json.dumps(sample_state(1).to_dict()))
    assert not problems(validator("state"), good)
    for broken in (
        {**good, "confidence": 1.5},
        {**good, "label": "bored"},
        {**good, "probabilities": {"happy": 1.0}},  # present state needs all 7
        {k: v for k, v in good.items() if k != "seq"},
        {**good, "extra": 1},
    ):
        assert problems(validator("state"), broken)


def test_home_assistant_discovery_carries_the_required_keys(mqtt_broker, make_publisher) -> None:
    log = MessageLog(mqtt_broker, "homeassistant/sensor/emoedge_hass/+/config")
    make_publisher(mqtt_broker, "hass", **FAST)
    topics = Topics("emoedge", "hass")
    wait_for(lambda: len(log.messages) >= 2, what="discovery configs")
    configs = {t: json.loads(p) for t, p, _ in log.messages}
    assert set(configs) == {
        "homeassistant/sensor/emoedge_hass/emotion/config",
        "homeassistant/sensor/emoedge_hass/confidence/config",
    }
    for config in configs.values():
        for key in ("name", "unique_id", "state_topic", "availability_topic", "device"):
            assert config[key], key
        assert config["state_topic"] == topics.state
        assert config["availability_topic"] == topics.availability
        assert (config["payload_available"], config["payload_not_available"]) == (
            "online", "offline")  # fmt: skip
        assert config["device"]["identifiers"] == ["emoedge_hass"]
    emotion = configs["homeassistant/sensor/emoedge_hass/emotion/config"]
    assert emotion["json_attributes_topic"] == topics.state
    assert "absent" in emotion["options"] and "happy" in emotion["options"]
    assert len({c["unique_id"] for c in configs.values()}) == 2
    late = MessageLog(mqtt_broker, "homeassistant/sensor/emoedge_hass/+/config")
    wait_for(lambda: len(late.messages) >= 2, what="retained discovery for a late subscriber")
    assert all(retained for _, _, retained in late.messages)
    late.close()

    # Home Assistant restarts: its status topic says online, the configs come again.
    mqtt_publish.single("homeassistant/status", "online", port=mqtt_broker.port)
    wait_for(lambda: len(log.messages) >= 4, what="discovery announced again")


def test_discovery_can_be_turned_off(mqtt_broker, make_publisher) -> None:
    log = MessageLog(mqtt_broker, ["homeassistant/sensor/emoedge_nohass/#", "emoedge/nohass/#"])
    make_publisher(mqtt_broker, "nohass", discovery=False)
    wait_for(lambda: log.on("emoedge/nohass/availability"), what="availability")
    assert not [t for t, _, _ in log.messages if t.startswith("homeassistant/")]


def test_heartbeat_repeats_the_last_state(mqtt_broker, make_publisher) -> None:
    log = MessageLog(mqtt_broker, "emoedge/beat/state")
    publisher = make_publisher(mqtt_broker, "beat", heartbeat_s=0.1)
    publisher.publish_state(sample_state(3))
    wait_for(lambda: len(log.on("emoedge/beat/state")) >= 3, what="heartbeats")
    assert {json.loads(p)["seq"] for p in log.on("emoedge/beat/state")} == {3}


def test_rate_limit_keeps_the_newest_state(mqtt_broker, make_publisher) -> None:
    log = MessageLog(mqtt_broker, "emoedge/limited/state")
    publisher = make_publisher(mqtt_broker, "limited", max_rate_per_topic=2)
    for seq in range(50):
        publisher.publish_state(sample_state(seq))
    wait_for(lambda: any(json.loads(p)["seq"] == 49 for p in log.on("emoedge/limited/state")),
             what="the newest state")  # fmt: skip
    assert len(log.on("emoedge/limited/state")) < 50


def test_each_event_reaches_subscribers_before_the_state_it_led_to(
    mqtt_broker, make_publisher
) -> None:
    topics = Topics("emoedge", "ordered")
    log = MessageLog(mqtt_broker, [topics.events, topics.state])
    publisher = make_publisher(mqtt_broker, "ordered", max_rate_per_topic=10000)
    wait_online(mqtt_broker, "ordered")
    pairs = 30  # more than the in-flight window of unacknowledged events
    for seq in range(pairs):  # as the daemon does: a cycle's event, then its state
        publisher.publish_event(sample_event(seq, "neutral", "happy"))
        publisher.publish_state(sample_state(seq))
    wait_for(lambda: len(log.on(topics.events)) == pairs, what="every event")
    wait_for(lambda: any(json.loads(p)["seq"] == pairs - 1 for p in log.on(topics.state)),
             what="the newest state")  # fmt: skip
    seen_events: set[int] = set()
    for topic, payload, _ in log.messages:
        seq = json.loads(payload)["seq"]
        if topic == topics.events:
            seen_events.add(seq)
        else:
            assert set(range(seq + 1)) <= seen_events, f"state {seq} before its event"
    log.close()


@contextmanager
def publishing_process(broker, device: str, **keys) -> Iterator[subprocess.Popen]:
    """A real process running MqttPublisher (tests/mqtt_publisher_proc.py), started."""
    table = json.dumps(broker.mqtt_table(**keys))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.mqtt_publisher_proc", table, device],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(15)


def test_last_will_marks_a_killed_publishing_process_offline(mqtt_broker) -> None:
    log = MessageLog(mqtt_broker, "emoedge/victim/availability")
    with publishing_process(mqtt_broker, "victim", keepalive=5) as proc:
        wait_for(lambda: log.on("emoedge/victim/availability") == [b"online"], what="online")
        proc.kill()  # SIGKILL: no goodbye, the broker publishes the will
        proc.wait(10)
        wait_for(lambda: log.on("emoedge/victim/availability")[-1:] == [b"offline"],
                 what="last will")  # fmt: skip
    late = MessageLog(mqtt_broker, "emoedge/victim/availability")
    try:
        wait_for(lambda: late.messages, what="retained availability")
        assert late.messages == [("emoedge/victim/availability", b"offline", True)]
    finally:
        late.close()
        log.close()


def test_clean_stop_publishes_offline(mqtt_broker) -> None:
    log = MessageLog(mqtt_broker, "emoedge/polite/#")
    with publishing_process(mqtt_broker, "polite") as proc:
        wait_for(lambda: log.on("emoedge/polite/events"), what="events")
        proc.terminate()
        assert proc.wait(15) == 0
    assert log.on("emoedge/polite/availability")[-1] == b"offline"
    log.close()


@pytest.mark.parametrize("device", ["a/b", "+", "#", ""])
def test_device_ids_that_are_not_one_topic_level_are_refused(device, mqtt_broker) -> None:
    from edge.core.errors import ConfigError
    from edge.mqtt.config import parse_mqtt_config
    from edge.mqtt.publisher import MqttPublisher

    with pytest.raises(ConfigError, match="device_id"):
        MqttPublisher(parse_mqtt_config(mqtt_broker.mqtt_table()), device, "m")
