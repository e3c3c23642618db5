"""The `state` payload follows one state machine (edge.mqtt.messages.STATES): over the sample clip,
for strict and lax event policies, every state validates against the schema and describes one
moment (its modalities are the cycle's, `absent` exactly when nothing is seen, the confidence is
the label's probability); pause publishes `paused` and ends the reported emotion, resume a
fresh state at once; the schema refuses the contradictions testers saw."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.core.config import EventConfig
from edge.mqtt.messages import STATES, EmotionState, problems, validator
from tests.edge.daemon.test_pipeline import Replay, make_pipeline, replay  # noqa: F401 (fixture)
from tests.fixtures_mqtt import sample_state


@pytest.mark.parametrize("threshold", [0.0, 0.3, 1.0], ids=["lax", "strict", "never"])
def test_every_state_over_the_clip_is_consistent(
    replay: Replay,  # noqa: F811
    tiny_model: Path,
    threshold: float,
) -> None:
    frames, wave, rate, clock = replay
    pipeline = make_pipeline(tiny_model, wave, rate, clock)
    pipeline.policy = type(pipeline.policy)(EventConfig(threshold, 0.5, heartbeat_s=0.0))
    seen_states = set()
    for frame in frames[::3]:
        result = pipeline.cycle(frame, frame.t)
        state = result.state
        assert state is not None  # heartbeat_s 0: a state every cycle
        payload = state.to_dict()
        assert not problems(validator("state"), payload), payload
        assert [state.face, state.audio] == result.inputs.mask.astype(bool).tolist()
        assert (state.state == "absent") == (not result.inputs.mask.any())
        if state.label is not None:
            assert state.confidence == state.probabilities[state.label]
        seen_states.add(state.state)
    assert "absent" in seen_states and len(seen_states) >= 2
    if threshold == 1.0:
        assert "present" not in seen_states and "uncertain" in seen_states


def test_pause_publishes_paused_ends_the_emotion_and_resume_starts_afresh(
    replay: Replay,  # noqa: F811
    tiny_model: Path,
) -> None:
    frames, wave, rate, clock = replay
    pipeline = make_pipeline(tiny_model, wave, rate, clock)
    pipeline.policy = type(pipeline.policy)(EventConfig(0.0, 0.0, heartbeat_s=1e9))
    start = next(i for i, f in enumerate(frames) if pipeline.cycle(f, f.t).event is not None)
    reported = pipeline.policy.reported
    assert reported is not None
    t = frames[start].t + 1.5
    paused, event = pipeline.pause(t)
    assert paused.state == "paused" and not problems(validator("state"), paused.to_dict())
    assert event is not None and (event.previous, event.current) == (reported, None)
    assert event.previous_duration_s == pytest.approx(1.5) and event.seq < paused.seq
    assert not problems(validator("event"), event.to_dict())
    assert pipeline.pause(t + 1)[1] is None  # nothing reported any more: no second event
    resumed = pipeline.cycle(frames[start + 1], frames[start + 1].t)
    assert resumed.state is not None and resumed.state.seq > paused.seq  # at once
    assert resumed.event is not None and resumed.event.previous is None  # a fresh start


def _contradiction(**changes) -> dict:
    payload = sample_state(1).to_dict()
    for key, value in changes.items():
        payload[key] = value
    return payload


@pytest.mark.parametrize(
    "payload",
    [
        _contradiction(state="absent", label=None),  # a face and happy 0.9, yet absent
        _contradiction(modalities={"face": False, "audio": False}),  # present, nothing seen
        _contradiction(state="uncertain"),  # uncertain with a label
        _contradiction(state="paused", label=None, confidence=0.0),  # paused, probabilities
        _contradiction(state="uncertain", label=None),  # uncertain, confidence 0.9
    ],
    ids=["absent-with-face", "present-unseen", "uncertain-label", "paused-probs", "uncertain-conf"],
)
def test_the_schema_refuses_contradictions(payload: dict) -> None:
    assert problems(validator("state"), payload)


def test_every_state_name_has_a_valid_example() -> None:
    examples = {
        "present": sample_state(1),
        "uncertain": EmotionState(
            None, 0.0, sample_state(1).probabilities, True, False, 1, 1, "m", "uncertain"
        ),
        "absent": EmotionState.blank("absent", 1, 1, "m"),
        "paused": EmotionState.blank("paused", 1, 1, "m"),
    }
    assert set(examples) == set(STATES)
    for state in examples.values():
        assert not problems(validator("state"), state.to_dict()), state
