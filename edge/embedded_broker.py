"""A private Mosquitto broker for `emoedge demo` when no broker is configured.

It listens on a free loopback port with a generated configuration in a temporary folder
and is stopped (and the folder removed) on exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from edge.errors import BrokerError

CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str:
    """The mosquitto binary; BrokerError naming how to install it when there is none."""
    found = shutil.which("mosquitto") or next((p for p in CANDIDATES if Path(p).exists()), None)
    if found is None:
        raise BrokerError(
            "no MQTT broker configured and mosquitto is not installed "
            "(apt install mosquitto, or pass --broker mqtt://HOST:PORT)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    """`with EmbeddedBroker() as broker: broker.url` — mosquitto on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> EmbeddedBroker:
        binary = find_mosquitto()
        self._dir = tempfile.TemporaryDirectory(prefix="emoedge-broker-")
        config = Path(self._dir.name) / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "log_dest stderr\nlog_type error\n"
        )
        self._proc = subprocess.Popen(
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self.__exit__(None, None, None)
                raise BrokerError(f"the embedded mosquitto did not start: {err.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise BrokerError(f"the embedded mosquitto did not listen on port {self.port}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
