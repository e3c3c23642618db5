"""A private Mosquitto broker for `emoedge demo` when no broker is configured.

It listens on a free loopback port with a generated configuration in a temporary folder
(`edge.mqtt.mosquitto`) and is stopped, and the folder removed, on exit.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import TracebackType

from edge.core.errors import BrokerError
from edge.mqtt.mosquitto import HOST, MosquittoProcess, free_port, mosquitto_binary


class EmbeddedBroker:
    """`with EmbeddedBroker() as broker: broker.url` — mosquitto on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"mqtt://{HOST}:{self.port}"
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._broker: MosquittoProcess | None = None

    def __enter__(self) -> EmbeddedBroker:
        try:
            mosquitto_binary()
        except BrokerError as error:
            raise BrokerError(
                f"no MQTT broker configured and {error}; or pass --broker mqtt://HOST:PORT"
            ) from None
        self._dir = tempfile.TemporaryDirectory(prefix="emoedge-broker-")
        self._broker = MosquittoProcess(
            Path(self._dir.name),
            [self.port],
            [f"listener {self.port} {HOST}", "allow_anonymous true", "persistence false"],
        )
        try:
            self._broker.start()
        except BrokerError:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
