"""A private Mosquitto broker process on loopback, for `emoedge bench --mqtt` and the tests.

Never the system broker: a generated configuration, random free ports, a temporary folder.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from edge.core.errors import BrokerError

HOST = "127.0.0.1"


def mosquitto_binary() -> str:
    """The mosquitto executable; BrokerError naming the package when it is missing."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise BrokerError("mosquitto is not installed (apt install mosquitto)")
    return found


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    """True when something accepts TCP connections on HOST:port."""
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class MosquittoProcess:
    """mosquitto running `config_lines` (listeners on `ports`) from `folder`; restartable on
    the same ports after `kill()` (SIGKILL) or `stop()`."""

    def __init__(self, folder: Path, ports: list[int], config_lines: list[str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.ports = ports
        self.log = folder / "mosquitto.log"
        self.config = folder / "mosquitto.conf"
        header = [f"user {getpass.getuser()}", f"log_dest file {self.log}",
                  "log_type error", "log_type warning", "log_type notice"]  # fmt: skip
        self.config.write_text("\n".join([*header, *config_lines, ""]))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart) it; returns once every listener accepts connections."""
        if self.running:
            raise BrokerError("mosquitto is already running")
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(
                [mosquitto_binary(), "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            while time.monotonic() < deadline and self.proc.poll() is None:
                if all(accepts(port) for port in self.ports):
                    return
                time.sleep(0.01)
            # Exited early (a port still held by the previous process?) or too slow.
            self.stop()
            if time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                log = self.log.read_text() if self.log.exists() else ""
                raise BrokerError(f"mosquitto did not start: {err.strip()} {log.strip()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: clients see the connection drop without a goodbye."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.running:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
