"""The daemon's loop against a real broker: a rate change takes effect at once (also after a
very slow rate), and a dead MQTT network thread ends the loop: the watchdog is no longer fed
and `run` raises an error whose exit code makes systemd restart the service."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest

from edge.core.config import parse_config
from edge.core.errors import EmoedgeError
from edge.daemon.sdnotify import Notifier
from edge.daemon.wiring import build_daemon, load_runner
from edge.mqtt.messages import Topics
from edge.mqtt.publisher import MqttPublisher
from tests.edge.daemon.test_sdnotify import Listener
from tests.fixtures_daemon import sample_config
from tests.fixtures_mqtt import Broker, wait_for, wait_online

LOOP = {"camera": {"loop": True}, "microphone": {"loop": True}}
RESTART_PREVENTED = {2, 3, 5}  # edge/systemd/emoedge.service RestartPreventExitStatus


def _daemon(model: Path, broker: Broker, device: str, notifier: Notifier | None = None):
    config = parse_config(sample_config(model, broker.mqtt_table(), **LOOP))
    publisher = MqttPublisher(config.mqtt, device, "tiny")
    return build_daemon(config, load_runner(config.model), publisher, notifier)


def _run_in_thread(daemon) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run(max_seconds=300)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_a_rate_change_takes_effect_at_once(tiny_model, mqtt_broker) -> None:
    daemon = _daemon(tiny_model, mqtt_broker, "rate")
    thread, errors = _run_in_thread(daemon)
    try:
        wait_for(lambda: daemon.stats.cycles > 2, 60, "cycles at 10 Hz")
        before = daemon.stats.cycles
        assert daemon.handle_command("rate", {"hz": 0.01}).ok
        slow = wait_for(lambda: daemon.stats.cycles > before and daemon.stats.cycles, 30,
                        "one cycle that schedules the next one 100 s later")  # fmt: skip
        assert daemon.handle_command("rate", {"hz": 10}).ok
        # 30 s bounds a hang; the old loop kept the 100 s period until its next cycle.
        wait_for(lambda: daemon.stats.cycles >= slow + 5, 30, "cycles at 10 Hz again")
    finally:
        daemon.stop()
        thread.join(30)
    assert not errors and not thread.is_alive()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_network_thread_stops_the_watchdog_and_exits_for_a_restart(
    tmp_path, tiny_model, mqtt_broker
) -> None:
    address = str(tmp_path / "notify")
    listener = Listener(address)
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})
    daemon = _daemon(tiny_model, mqtt_broker, "doomed", notifier)

    def die(name: str, value: object) -> None:
        raise SystemExit("the network thread dies")  # no guard catches a BaseException

    daemon.handle_command = die  # type: ignore[method-assign]
    thread, errors = _run_in_thread(daemon)
    try:
        wait_online(mqtt_broker, "doomed")
        wait_for(lambda: listener.times("WATCHDOG=1"), 30, "watchdog pings")
        topic = f"{Topics('emoedge', 'doomed').base}/set/pause"
        mqtt_publish.single(topic, b"", qos=1, port=mqtt_broker.port)
        thread.join(60)
    finally:
        daemon.stop()
        thread.join(30)
        listener.close()
    assert not thread.is_alive()
    (error,) = errors
    assert isinstance(error, EmoedgeError) and "network thread" in str(error)
    assert error.exit_code != 0 and error.exit_code not in RESTART_PREVENTED
    stopping = listener.times("STOPPING=1")
    assert stopping and not [t for t in listener.times("WATCHDOG=1") if t > stopping[0]]
