"""The consumer side: `edge.mqtt.client` (typed, validated messages; shared subscriptions) and
`emoedge subscribe` (JSON lines, live view, Ctrl-C)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import paho.mqtt.publish as mqtt_publish

from edge.mqtt.client import Message, subscribe
from edge.mqtt.messages import EmotionEvent, EmotionState, problems, validator
from edge.mqtt.subscribe import LiveView
from tests.conftest import REPO
from tests.fixtures_mqtt import MessageLog, sample_event, sample_state, wait_for

FAST = {"max_rate_per_topic": 1000}


def test_iterating_a_subscription_gives_typed_validated_messages(mqtt_broker, make_publisher):
    publisher = make_publisher(mqtt_broker, "typed", **FAST)
    with subscribe(mqtt_broker.url(), "typed") as sub:
        publisher.publish_state(sample_state(5, "fear"))
        publisher.publish_event(sample_event(5, "happy", "fear"))
        got: dict[str, Message] = {}
        for msg in sub:
            got[msg.kind] = msg
            if {"availability", "state", "events"} <= set(got):
                break
    assert got["availability"].payload == "online"
    state = got["state"].state
    assert isinstance(state, EmotionState) and (state.label, state.seq) == ("fear", 5)
    event = got["events"].event
    assert isinstance(event, EmotionEvent) and (event.previous, event.current) == ("happy", "fear")
    assert all(m.device == "typed" for m in got.values())


def test_invalid_payloads_are_counted_not_delivered(mqtt_broker) -> None:
    received: list[Message] = []
    with subscribe(mqtt_broker.url(), "forged", callback=received.append) as sub:
        for payload in (b"not json", b'{"label": "happy"}', json.dumps({"x": 1}).encode()):
            mqtt_publish.single("emoedge/forged/state", payload, qos=1, port=mqtt_broker.port)
        mqtt_publish.single("emoedge/forged/availability", "maybe", qos=1, port=mqtt_broker.port)
        good = json.dumps(sample_state(1).to_dict())
        mqtt_publish.single("emoedge/forged/state", good, qos=1, port=mqtt_broker.port)
        wait_for(lambda: received, what="the valid state")
        assert sub.invalid == 4
    assert [m.payload["seq"] for m in received] == [1]


def test_shared_subscription_splits_events_with_none_lost(mqtt_broker, make_publisher) -> None:
    members: list[list[int]] = [[], []]
    lock = threading.Lock()

    def collect(index: int):
        def on_message(msg: Message) -> None:
            if msg.kind == "events":
                with lock:
                    members[index].append(msg.payload["seq"])

        return on_message

    subs = [
        subscribe(mqtt_broker.url(), "fleet", group="workers", callback=collect(i))
        for i in range(2)
    ]
    try:
        assert all(t.startswith("$share/workers/emoedge/fleet/events") for t in
                   [t for t in subs[0].topics if t.endswith("/events")])  # fmt: skip
        publisher = make_publisher(mqtt_broker, "fleet", **FAST)
        for seq in range(200):
            publisher.publish_event(sample_event(seq))
        wait_for(lambda: len(members[0]) + len(members[1]) >= 200, what="all events")
    finally:
        for sub in subs:
            sub.close()
    assert sorted(members[0] + members[1]) == list(range(200))  # none lost, none twice
    assert members[0] and members[1]  # both members got a share
    assert members[0] == sorted(members[0]) and members[1] == sorted(members[1])


def _subscribe_cli(broker, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "subscribe", "--broker", broker.url(), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_subscribe_cli_prints_json_lines(mqtt_broker, make_publisher) -> None:
    early = MessageLog(mqtt_broker, "emoedge/cli/state")
    publisher = make_publisher(mqtt_broker, "cli", **FAST)
    publisher.publish_state(sample_state(11, "surprise"))
    wait_for(lambda: early.messages, what="the state at the broker")
    early.close()
    proc = _subscribe_cli(mqtt_broker, "--device", "cli", "--json", "--count", "2")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert {line["kind"] for line in lines} == {"availability", "state"}
    state = next(line for line in lines if line["kind"] == "state")
    assert state["retained"] and state["payload"]["label"] == "surprise"
    assert not problems(validator("state"), state["payload"])


def test_subscribe_cli_exits_cleanly_on_ctrl_c(mqtt_broker, make_publisher) -> None:
    make_publisher(mqtt_broker, "ctrlc", **FAST)
    proc = _subscribe_cli(mqtt_broker, "--device", "ctrlc")
    assert proc.stdout is not None
    line = proc.stdout.readline()  # not a TTY: one line per message
    assert line.startswith("ctrlc availability")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_live_view_shows_emotion_confidence_and_availability() -> None:
    view = LiveView()
    view.update("kitchen", "availability", "online")
    view.update("kitchen", "state", sample_state(1, "happy", 0.5).to_dict())
    view.update("hall", "availability", "offline")
    lines = view.render().splitlines()
    kitchen = next(line for line in lines if line.startswith("kitchen"))
    assert "online" in kitchen and "happy" in kitchen and "50%" in kitchen
    assert kitchen.count("█") == 10
    hall = next(line for line in lines if line.startswith("hall"))
    assert "offline" in hall and hall.endswith(" -")  # no state yet: no age
    old = sample_state(2, "sad")
    old.epoch_ms -= 3_600_000  # a retained state from an hour ago shows its age
    view.update("hall", "state", old.to_dict())
    hall = next(line for line in view.render().splitlines() if line.startswith("hall"))
    assert float(hall.split()[-1].rstrip("s")) >= 3600
