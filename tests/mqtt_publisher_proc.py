"""A small real publishing process for the MQTT tests: `python -m tests.mqtt_publisher_proc
'<[mqtt] table as JSON>' DEVICE`. Prints `ready` once started, then publishes a state every
50 ms and an event every 5th state until it is killed or gets SIGTERM (clean stop)."""

from __future__ import annotations

import json
import signal
import sys
import threading

from edge.core.labels import LABELS
from edge.mqtt.config import parse_mqtt_config
from edge.mqtt.messages import CommandResult
from edge.mqtt.publisher import MqttPublisher
from tests.fixtures_mqtt import sample_event, sample_state


def main() -> None:
    config = parse_mqtt_config(json.loads(sys.argv[1]))
    publisher = MqttPublisher(config, sys.argv[2], "test-model")
    publisher.set_command_handler(lambda name, value: CommandResult(name, True, "applied", value))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    publisher.start()
    print("ready", flush=True)
    seq = 0
    while not stop.is_set():
        label = LABELS[(seq // 5) % len(LABELS)]
        publisher.publish_state(sample_state(seq, label))
        if seq % 5 == 0:
            previous = LABELS[(seq // 5 - 1) % len(LABELS)]
            publisher.publish_event(sample_event(seq, previous, label))
        seq += 1
        stop.wait(0.05)
    publisher.stop()


if __name__ == "__main__":
    main()
