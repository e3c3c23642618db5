"""The MQTT contract in one place: topics, the JSON payload of every message (to and from its
record side by side), the schemas that validate them, and the `Publisher` the daemon talks to.

    <prefix>/<device>/availability      "online" / "offline" (retained; offline is the will)
    <prefix>/<device>/state             EmotionState (retained)
    <prefix>/<device>/events            EmotionEvent
    <prefix>/<device>/stats             the daemon's statistics
    <prefix>/<device>/set/<name>        a command (COMMANDS); its answer on .../result

Schemas live in `edge/schemas/<name>.json` (JSON Schema draft 2020-12, versioned by
`schema_version` in each payload and the schema's `$id`). The daemon builds the records;
`edge.mqtt.publisher` sends them, `edge.mqtt.client` parses them back for consumers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import cache
from importlib.resources import files
from typing import Any, Protocol

from jsonschema import Draft202012Validator

from edge.core.errors import ConfigError
from edge.core.untrusted_json import decode_json

SCHEMA_VERSION = 1
AVAILABILITY = ("online", "offline")
COMMANDS = ("pause", "resume", "rate", "threshold", "fusion", "reset_voice")
MAX_COMMAND_BYTES = 1024
KINDS = ("availability", "state", "events", "stats")  # what a device publishes, by topic
SCHEMA_OF = {"state": "state", "events": "event", "stats": "stats", "result": "command_result"}


# -- topics -----------------------------------------------------------------------------------


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
    if len(parts) == 2 and parts[1] in KINDS:
        return parts[0], parts[1]
    if len(parts) == 4 and parts[1] == "set" and parts[3] == "result":
        return parts[0], "result"
    return None


# -- JSON on the wire -------------------------------------------------------------------------


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def stamped(d: dict[str, Any], epoch_ms: int | None = None) -> dict[str, Any]:
    """`d` with schema_version, epoch_ms and its ISO 8601 UTC timestamp added."""
    ms = now_ms() if epoch_ms is None else epoch_ms
    return {"schema_version": SCHEMA_VERSION, **d, "epoch_ms": ms, "timestamp": iso_utc(ms)}


def encode(d: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; NaN and infinity are refused (they are not JSON); values JSON does
    not know (paths, enums) are written as strings."""
    return json.dumps(d, separators=(",", ":"), allow_nan=False, default=str).encode()


def iso_utc(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-23T18:30:00.123Z."""
    return (
        datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


# -- schemas ----------------------------------------------------------------------------------


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


# -- records and their payloads ----------------------------------------------------------------

# The `state` of a device, one of four, each with one rule that every state payload keeps:
#   absent    nothing seen or heard: no label, confidence 0, no probabilities, no modality
#   uncertain a face and/or voice, but no emotion has held above the threshold (yet): no label,
#             confidence 0, the probabilities of this moment, the modalities seen
#   present   a face and/or voice and a reported `label`; confidence is its probability now
#   paused    inference paused by `set/pause`: as absent
STATES = ("absent", "uncertain", "present", "paused")


@dataclass
class EmotionState:
    """The current (smoothed) emotion of one device at one moment; see STATES for how `state`,
    `label`, `probabilities` and the modalities go together."""

    label: str | None
    confidence: float
    probabilities: dict[str, float]
    face: bool
    audio: bool
    epoch_ms: int
    seq: int
    model_id: str
    state: str = "present"
    # each used modality's own prediction at this moment, {'label', 'confidence'} or None
    # where it is not used: what drove the fused result
    by_modality: dict[str, dict[str, Any] | None] = field(
        default_factory=lambda: {"face": None, "voice": None}
    )
    fusion: str = "auto"  # the fusion mode (edge.core.fusion.MODES)

    @classmethod
    def blank(
        cls, state: str, epoch_ms: int, seq: int, model_id: str, fusion: str = "auto"
    ) -> EmotionState:
        """An `absent` or `paused` state: nothing seen, nothing reported."""
        return cls(None, 0.0, {}, False, False, epoch_ms, seq, model_id, state, fusion=fusion)

    def to_dict(self) -> dict[str, Any]:
        """The `state` payload (schema `state`)."""
        d = asdict(self)
        d["modalities"] = {"face": d.pop("face"), "audio": d.pop("audio")}
        d["timestamp"] = iso_utc(self.epoch_ms)
        d["schema_version"] = SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmotionState:
        """The record of a (validated) `state` payload."""
        return cls(
            label=d["label"],
            confidence=d["confidence"],
            probabilities=d["probabilities"],
            face=d["modalities"]["face"],
            audio=d["modalities"]["audio"],
            epoch_ms=d["epoch_ms"],
            seq=d["seq"],
            model_id=d["model_id"],
            state=d["state"],
            by_modality=d.get("by_modality", {"face": None, "voice": None}),
            fusion=d.get("fusion", "auto"),
        )


@dataclass
class EmotionEvent:
    """One change of the reported emotion: previous → current, and how long previous held."""

    previous: str | None
    current: str | None
    previous_duration_s: float
    confidence: float
    epoch_ms: int
    seq: int
    model_id: str

    def to_dict(self) -> dict[str, Any]:
        """The `events` payload (schema `event`)."""
        d = asdict(self)
        d["timestamp"] = iso_utc(self.epoch_ms)
        d["schema_version"] = SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmotionEvent:
        """The record of a (validated) `events` payload."""
        return cls(
            previous=d["previous"],
            current=d["current"],
            previous_duration_s=d["previous_duration_s"],
            confidence=d["confidence"],
            epoch_ms=d["epoch_ms"],
            seq=d["seq"],
            model_id=d["model_id"],
        )


@dataclass
class CommandResult:
    """Answer to a `set/<name>` command: accepted or rejected with the reason."""

    name: str
    ok: bool
    message: str = ""
    value: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, epoch_ms: int | None = None) -> dict[str, Any]:
        """The `set/<name>/result` payload (schema `command_result`), stamped now by default."""
        body = {"name": self.name, "ok": self.ok, "message": self.message, "value": self.value,
                "extra": self.extra}  # fmt: skip
        return stamped(body, epoch_ms)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CommandResult:
        """The record of a (validated) result payload."""
        return cls(d["name"], d["ok"], d["message"], d["value"], d["extra"])


def parse_command(name: str, raw: bytes) -> tuple[Any, str]:
    """The value of a `set/<name>` command payload: (value, "") when valid, (None, reason) for
    anything else (unknown command, too big, not acceptable JSON, against the schema)."""
    if name not in COMMANDS:
        return None, f"unknown command {name!r}; known: {', '.join(COMMANDS)}"
    if len(raw) > MAX_COMMAND_BYTES:
        return None, f"payload of {len(raw)} bytes is over the {MAX_COMMAND_BYTES}-byte limit"
    try:
        value = decode_json(raw)  # commands are flat: the default depth bound
    except (ValueError, RecursionError) as error:
        return None, f"payload is not acceptable JSON ({error})"
    found = problems(command_validator(name), value)
    if found:
        return None, "invalid payload: " + "; ".join(found)
    return value, ""


CommandHandler = Callable[[str, Any], CommandResult]


class Publisher(Protocol):
    """How the daemon hands messages out. `edge.mqtt.publisher` implements it; nothing else in the
    daemon touches an MQTT client."""

    def start(self) -> None:
        """Connect (or begin connecting), announce availability and discovery."""

    def publish_state(self, state: EmotionState) -> None: ...

    def publish_event(self, event: EmotionEvent) -> None: ...

    def publish_stats(self, stats: dict[str, Any]) -> None: ...

    def set_command_handler(self, handler: CommandHandler) -> None:
        """Commands received on `<prefix>/<device>/set/<name>` go to `handler(name, payload)`."""

    def stop(self) -> None:
        """Publish availability offline, flush what is queued, disconnect."""

    def problem(self) -> str | None:
        """Why publishing can no longer work (a dead network thread), or None when healthy."""
