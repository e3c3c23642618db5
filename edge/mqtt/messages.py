"""What the daemon tells its subscribers: state, events and stats, as typed records.

The daemon builds these; `edge.mqtt.publisher` serialises them (JSON, validated by the schemas in
`edge/schemas/`) and `edge.mqtt.client` parses them back for consumers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

SCHEMA_VERSION = 1


def iso_utc(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-23T18:30:00.123Z."""
    return (
        datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


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
        d = asdict(self)
        d["modalities"] = {"face": d.pop("face"), "audio": d.pop("audio")}
        d["timestamp"] = iso_utc(self.epoch_ms)
        d["schema_version"] = SCHEMA_VERSION
        return d


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
        d = asdict(self)
        d["timestamp"] = iso_utc(self.epoch_ms)
        d["schema_version"] = SCHEMA_VERSION
        return d


@dataclass
class CommandResult:
    """Answer to a `set/<name>` command: accepted or rejected with the reason."""

    name: str
    ok: bool
    message: str = ""
    value: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


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
