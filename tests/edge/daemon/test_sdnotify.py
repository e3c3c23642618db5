"""The systemd notify protocol against a real datagram socket: the daemon (a subprocess)
sends READY=1, pings WATCHDOG=1 at about half of WATCHDOG_USEC and STOPPING=1 on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from edge.daemon.sdnotify import Notifier
from tests.fixtures_daemon import emoedge, finish, sample_config, write_toml
from tests.fixtures_mqtt import Broker, wait_for

WATCHDOG_USEC = 400_000  # pings expected every 0.2 s


class Listener:
    """A bound AF_UNIX datagram socket recording (arrival time, message) pairs."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def times(self, line: str) -> list[float]:
        return [t for t, m in list(self.messages) if m == line]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_watchdog_stopping(
    tmp_path: Path, tiny_model: Path, mqtt_broker: Broker, abstract: bool
) -> None:
    address = f"@emoedge-test-{uuid.uuid4().hex}" if abstract else str(tmp_path / "notify")
    listener = Listener(address)
    loop = {"camera": {"loop": True}, "microphone": {"loop": True}}
    config = sample_config(tiny_model, mqtt_broker.mqtt_table(prefix="sdnotify"), **loop)
    path = write_toml(tmp_path / "c.toml", config)
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    proc = emoedge("run", "--config", str(path), env=env)
    try:
        ready = wait_for(lambda: listener.times("READY=1"), 240, "READY=1")[0]
        time.sleep(3.0)
        proc.send_signal(signal.SIGTERM)
        code, _, err = finish(proc, timeout=30)
        stopping = wait_for(lambda: listener.times("STOPPING=1"), 5, "STOPPING=1")[0]
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    pings = [t for t in listener.times("WATCHDOG=1") if ready <= t <= stopping]
    expected = (stopping - ready) / (WATCHDOG_USEC / 2e6)
    assert expected / 4 <= len(pings) <= expected * 2 + 2, (len(pings), expected)
    assert ready < stopping


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready()
    notifier.watchdog()
    notifier.stopping()


def test_watchdog_meant_for_another_process_is_ignored(tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "s"), "WATCHDOG_USEC": "1000000"}
    assert Notifier(env).watchdog_interval == pytest.approx(0.5)
    other = {**env, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(other).watchdog_interval is None
