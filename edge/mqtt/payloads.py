"""The MQTT topic layout and the JSON payloads, shared by the publisher and the consumers.

Schemas live in `edge/schemas/<name>.json` (JSON Schema draft 2020-12, versioned by
`schema_version` in each payload and the schema's `$id`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator

from edge.core.errors import ConfigError
from edge.mqtt.messages import SCHEMA_VERSION, iso_utc

AVAILABILITY = ("online", "offline")
COMMANDS = ("pause", "resume", "rate", "threshold", "fusion")
MAX_COMMAND_BYTES = 1024
MAX_COMMAND_DEPTH = 4  # commands are flat objects; deeper nesting is refused before parsing


def valid_topic_level(value: str) -> bool:
    """True when `value` can be one level of a topic name (no /, +, #, NUL; not empty)."""
    return bool(value) and not any(c in value for c in "/+#\0")


@dataclass(frozen=True)
class Topics:
    """Topic names of one device: `<prefix>/<device>/<kind>`."""

    prefix: str
    device: str

    def __post_init__(self) -> None:
        if not valid_topic_level(self.device):
            raise ConfigError(
                f"device_id: invalid value {self.device!r}; allowed: a non-empty name "
                "without /, +, # or NUL"
            )

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def commands(self) -> str:
        """Filter for every command topic of this device."""
        return f"{self.base}/set/+"

    def result(self, name: str) -> str:
        return f"{self.base}/set/{name}/result"


def parse_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """(device, kind) of `<prefix>/<device>/<kind>`; kind is availability/state/events/stats,
    or `result` for `set/<name>/result`; None for any other topic."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) == 2 and parts[1] in ("availability", "state", "events", "stats"):
        return parts[0], parts[1]
    if len(parts) == 4 and parts[1] == "set" and parts[3] == "result":
        return parts[0], "result"
    return None


@cache
def schema(name: str) -> dict[str, Any]:
    """The JSON Schema `edge/schemas/<name>.json`."""
    return json.loads((files("edge") / "schemas" / f"{name}.json").read_text())


@cache
def validator(name: str) -> Draft202012Validator:
    """A validator for schema `name` (state, event, stats, command_result, discovery)."""
    return Draft202012Validator(schema(name))


@cache
def command_validator(command: str) -> Draft202012Validator:
    """A validator for the payload of command `command` (one of COMMANDS)."""
    return Draft202012Validator({"$ref": f"#/$defs/{command}", **schema("command")})


def problems(validator_: Draft202012Validator, payload: Any) -> list[str]:
    """Readable schema violations, e.g. `hz: 0 is less than or equal to the minimum of 0`."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(payload)'}: {e.message}"
        for e in sorted(validator_.iter_errors(payload), key=lambda e: list(e.absolute_path))
    ]


def nesting_depth(text: str) -> int:
    """The deepest nesting of JSON arrays and objects in `text` (brackets inside strings do
    not count); cheap and without recursion, so it can run before the parser."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of the range of a finite number")
    return value


def decode_json(raw: bytes, max_depth: int = MAX_COMMAND_DEPTH) -> Any:
    """Parse untrusted JSON: ValueError for non-UTF-8 bytes, nesting deeper than
    `max_depth`, NaN/Infinity and numbers that overflow to infinity (empty means {})."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 (byte {error.start})") from None
    if not text.strip():
        return {}
    if nesting_depth(text) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def stamped(d: dict[str, Any], epoch_ms: int | None = None) -> dict[str, Any]:
    """`d` with schema_version, epoch_ms and its ISO 8601 UTC timestamp added."""
    ms = now_ms() if epoch_ms is None else epoch_ms
    return {"schema_version": SCHEMA_VERSION, **d, "epoch_ms": ms, "timestamp": iso_utc(ms)}


def encode(d: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; NaN and infinity are refused (they are not JSON); values JSON does
    not know (paths, enums) are written as strings."""
    return json.dumps(d, separators=(",", ":"), allow_nan=False, default=str).encode()
