"""Every record's payload maps back to the same record, and validates against its schema."""

from __future__ import annotations

from edge.core.labels import LABELS
from edge.mqtt.messages import (
    CommandResult,
    EmotionEvent,
    EmotionState,
    problems,
    validator,
)

PROBABILITIES = {label: 0.9 if label == "happy" else 0.1 / 6 for label in LABELS}
STATE = EmotionState(
    "happy", 0.9, PROBABILITIES, True, False, 1_700_000_000_123, 7, "m",
    by_modality={"face": {"label": "happy", "confidence": 0.8}, "voice": None}, fusion="face",
)  # fmt: skip
EVENT = EmotionEvent("neutral", "happy", 2.5, 0.9, 1_700_000_000_123, 8, "m")
RESULT = CommandResult("rate", True, "inference at 2 Hz", {"hz": 2}, {})


def test_each_record_round_trips_through_its_payload() -> None:
    assert EmotionState.from_dict(STATE.to_dict()) == STATE
    assert EmotionState.from_dict(EmotionState.blank("absent", 1, 2, "m").to_dict()).state == (
        "absent"
    )
    assert EmotionEvent.from_dict(EVENT.to_dict()) == EVENT
    assert CommandResult.from_dict(RESULT.to_dict()) == RESULT


def test_each_payload_validates_against_its_schema() -> None:
    for record, name in ((STATE, "state"), (EVENT, "event"), (RESULT, "command_result")):
        assert not problems(validator(name), record.to_dict()), name
