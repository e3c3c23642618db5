"""`emoedge subscribe`: watch devices live (a table for people, JSON lines for scripts)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

from edge.cli import Command

BAR_WIDTH = 20
REFRESH_S = 0.5


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", default="mqtt://localhost:1883",
                   help="broker URL, mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS)")  # fmt: skip
    p.add_argument("--device", default="+", help="device id, or + for every device (default)")
    p.add_argument("--json", action="store_true", help="one JSON object per message on stdout")
    p.add_argument("--group", help="MQTT 5 shared subscription group: members split the events")
    p.add_argument("--prefix", default="emoedge", help="topic prefix (default emoedge)")
    p.add_argument("--username", help="user name for a password listener")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--password-env", metavar="VAR", help="read the password from $VAR")
    secret.add_argument("--password-file", metavar="FILE", help="read the password from FILE")
    p.add_argument("--ca-file", help="CA certificate that signed the broker's (implies TLS)")
    p.add_argument("--protocol", choices=["3.1.1", "5"], default="5")
    p.add_argument("--count", type=int, metavar="N", help="exit after N messages")


def mqtt_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `[mqtt]` table keys given on the command line."""
    table: dict[str, Any] = {"url": args.broker, "prefix": args.prefix, "protocol": args.protocol}
    for key in ("username", "password_env", "password_file"):
        if getattr(args, key):
            table[key] = getattr(args, key)
    if args.ca_file:
        table["tls"] = {"ca_file": args.ca_file}
    return table


@dataclass
class DeviceRow:
    online: bool | None = None
    label: str | None = None
    confidence: float = 0.0
    last_ms: int | None = None  # timestamp of the newest state or event (a retained one may be old)


class LiveView:
    """What a person sees: per device the emotion, a confidence bar, online/offline and age."""

    def __init__(self) -> None:
        self.rows: dict[str, DeviceRow] = {}

    def update(self, device: str, kind: str, payload: Any) -> None:
        row = self.rows.setdefault(device, DeviceRow())
        if kind in ("state", "events"):
            row.last_ms = max(row.last_ms or 0, payload["epoch_ms"])
        if kind == "availability":
            row.online = payload == "online"
        elif kind == "state":
            row.label = payload["label"] or payload["state"]
            row.confidence = payload["confidence"]
        elif kind == "events":
            row.label = payload["current"] or "absent"
            row.confidence = payload["confidence"]

    def render(self) -> str:
        now = time.time()
        lines = [f"{'DEVICE':<20} {'STATUS':<8} {'EMOTION':<9} {'CONFIDENCE':<{BAR_WIDTH + 6}} AGE"]
        for device, row in sorted(self.rows.items()):
            status = {None: "?", True: "online", False: "offline"}[row.online]
            filled = round(row.confidence * BAR_WIDTH)
            bar = "█" * filled + "·" * (BAR_WIDTH - filled)
            age = "-" if row.last_ms is None else f"{max(0.0, now - row.last_ms / 1000):.1f}s"
            lines.append(
                f"{device:<20} {status:<8} {row.label or '-':<9} {bar} {row.confidence:>4.0%} "
                f"{age:>7}"
            )
        if len(lines) == 1:
            lines.append("(waiting for devices…)")
        return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from edge.core.errors import UsageError
    from edge.mqtt.client import Subscription
    from edge.mqtt.config import parse_mqtt_config

    if args.count is not None and args.count < 1:
        raise UsageError(f"--count must be at least 1, got {args.count}")
    config = parse_mqtt_config(mqtt_options(args))
    sub = Subscription(config, args.device, group=args.group)
    out: TextIO = sys.stdout
    view = LiveView()
    tty = out.isatty() and not args.json
    received = 0
    next_draw = 0.0
    # Ctrl-C ends the loop at its next turn (at most REFRESH_S later) instead of raising inside
    # whatever the main thread holds (a KeyboardInterrupt inside the queue's lock could leave it
    # held, and closing the subscription then waited for ever)
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        while (args.count is None or received < args.count) and not interrupted.is_set():
            msg = sub.get(timeout=REFRESH_S)
            if msg is not None:
                received += 1
                if args.json:
                    out.write(json.dumps(msg.to_dict()) + "\n")
                    out.flush()
                    continue
                view.update(msg.device, msg.kind, msg.payload)
                if not tty:
                    out.write(f"{msg.device} {msg.kind}: {json.dumps(msg.payload)}\n")
                    out.flush()
            if tty and time.monotonic() >= next_draw:
                out.write("\x1b[H\x1b[2J" + view.render() + "\n")
                out.flush()
                next_draw = time.monotonic() + REFRESH_S
    finally:
        signal.signal(signal.SIGINT, previous)
        sub.close()
    return 0


SUBSCRIBE = Command(
    help="watch emotion state and events of devices over MQTT (live table or JSON lines)",
    configure=_configure,
    run=_run,
)
