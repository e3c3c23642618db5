"""A hostile client against a real broker: payloads that used to end paho's network thread
(deep nesting, NaN, non-UTF-8) are rejected and the device keeps answering; a flood of
commands is throttled and counted and never delays events; a dead network thread is noticed."""

from __future__ import annotations

import json

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.mqtt.messages import CommandResult, Topics, decode_json, encode
from tests.fixtures_mqtt import MessageLog, sample_event, wait_for, wait_online

TOPICS = Topics("emoedge", "hostile")
FAST = {"max_rate_per_topic": 1000}
HOSTILE = [
    ("rate", b"[" * 1000),
    ("rate", b'{"hz": ' + b"[" * 480 + b"]" * 480 + b"}"),
    ("rate", b'{"hz": NaN}'),
    ("rate", b'{"hz": 1e999}'),
    ("rate", b'{"hz": -Infinity}'),
    ("threshold", b'{"confidence": NaN}'),
    ("threshold", b'{"hold_s": NaN}'),
    ("pause", b"\xff\xfe{}"),
    ("pause", b'{"\xc3\x28": 1}'),
]


def _client(broker) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def _results(log: MessageLog, name: str) -> list[dict]:
    return [json.loads(p) for p in log.on(TOPICS.result(name))]


def _answers(log: MessageLog) -> list[dict]:
    """Results of the commands in HOSTILE, in arrival order."""
    topics = {TOPICS.result(name) for name, _ in HOSTILE}
    return [json.loads(p) for t, p, _ in list(log.messages) if t in topics]


def _echo(name: str, value: object) -> CommandResult:
    """A handler that, like the daemon's, echoes the value it applied into the result."""
    return CommandResult(name, True, "applied", value)


def test_hostile_payloads_are_rejected_and_the_device_keeps_answering(
    mqtt_broker, make_publisher
) -> None:
    log = MessageLog(mqtt_broker, f"{TOPICS.base}/set/+/result")
    publisher = make_publisher(mqtt_broker, "hostile", **FAST)
    publisher.set_command_handler(_echo)
    wait_online(mqtt_broker, "hostile")
    sender = _client(mqtt_broker)
    try:
        for i, (name, payload) in enumerate(HOSTILE):
            sender.publish(f"{TOPICS.base}/set/{name}", payload, qos=1).wait_for_publish(10)
            wait_for(lambda i=i: len(_answers(log)) > i, what=f"a result for {payload[:20]!r}")
        sender.publish(f"{TOPICS.base}/set/resume", b"{}", qos=1).wait_for_publish(10)
        wait_for(lambda: _results(log, "resume"), what="a valid command still answered")
    finally:
        sender.disconnect()
        sender.loop_stop()
        log.close()
    rejected = _answers(log)
    assert len(rejected) == len(HOSTILE)
    assert all(r["ok"] is False and "JSON" in r["message"] for r in rejected), rejected
    assert _results(log, "resume")[0]["ok"] is True
    assert publisher.problem() is None
    assert publisher.counters()["rejected_commands"] == len(HOSTILE)


def test_decode_json_names_the_problem() -> None:
    assert decode_json(b"") == {} and decode_json(b' {"hz": 2.5} ') == {"hz": 2.5}
    assert decode_json(b" \t\r\n") == {}  # JSON's whitespace alone is empty
    assert decode_json(b'{"a": "[[[[[[[[[[\\"[[["}') == {"a": '[[[[[[[[[["[[['}
    for raw, words in [(b"[" * 5000, "nested deeper"), (b'{"hz": NaN}', "NaN"),
                       (b"[1e400]", "finite"), (b"\x80", "UTF-8"), (b"\x1c", "Expecting value"),
                       (" \u0085 ".encode(), "Expecting value")]:  # fmt: skip
        try:
            decode_json(raw)
        except ValueError as error:
            assert words in str(error), error
        else:
            raise AssertionError(f"{raw[:20]!r} was accepted")


def test_a_command_flood_is_throttled_and_never_delays_events(mqtt_broker, make_publisher):
    log = MessageLog(mqtt_broker, [f"{TOPICS.base}/set/+/result", TOPICS.events])
    publisher = make_publisher(mqtt_broker, "hostile", **FAST)
    publisher.set_command_handler(_echo)
    wait_online(mqtt_broker, "hostile")
    flood = _client(mqtt_broker)
    try:
        for _ in range(3000):
            flood.publish(f"{TOPICS.base}/set/bogus", b"{}", qos=0)
        for seq in range(43):
            publisher.publish_event(sample_event(seq))
        wait_for(lambda: len(log.on(TOPICS.events)) == 43, what="all 43 events")
        wait_for(lambda: publisher.counters()["throttled_commands"] > 0, what="throttling")
    finally:
        flood.disconnect()
        flood.loop_stop()
        log.close()
    assert [json.loads(p)["seq"] for p in log.on(TOPICS.events)] == list(range(43))
    counters = publisher.counters()
    answered = len(_results(log, "bogus"))
    assert answered < 3000 and counters["throttled_commands"] > 0
    assert all(not r["ok"] for r in _results(log, "bogus"))
    publisher.publish_stats({"cycles": 1})
    assert b'"throttled_commands"' in encode(counters)


def test_a_dead_network_thread_is_noticed(mqtt_broker, make_publisher) -> None:
    """A BaseException in a handler is the one thing the callback guard lets through: it ends
    paho's network thread as any escaped exception used to."""

    def die(name: str, value: object) -> CommandResult:
        raise SystemExit("simulated death of the network thread")

    publisher = make_publisher(mqtt_broker, "hostile", **FAST)
    publisher.set_command_handler(die)
    wait_online(mqtt_broker, "hostile")
    assert publisher.problem() is None
    sender = _client(mqtt_broker)
    try:
        sender.publish(f"{TOPICS.base}/set/pause", b"", qos=1).wait_for_publish(10)
        problem = wait_for(publisher.problem, what="the dead thread to be noticed")
    finally:
        sender.disconnect()
        sender.loop_stop()
    assert "network thread" in problem
