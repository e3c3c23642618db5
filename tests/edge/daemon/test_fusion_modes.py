"""The daemon's [fusion] modes over the model's three output rows (fused, face, voice)."""

from __future__ import annotations

import json

import jinja2
import numpy as np

from edge.core.fusion import FusionConfig, fuse, log_softmax, modality_predictions, used_mask
from edge.mqtt.messages import EmotionState
from edge.mqtt.publisher import ATTRIBUTES_TEMPLATE

FACE = np.array([3.0, 0, 0, 0, 0, 0, 0])  # says class 0
VOICE = np.array([0, 0, 0, 0, 4.0, 0, 0])  # says class 4
MODEL = np.array([0, 2.0, 0, 0, 0, 0, 0])  # the model's own fusion says class 1
ROWS = np.stack([MODEL, FACE, VOICE])
BOTH, FACE_ONLY, VOICE_ONLY, NONE = ([1, 1], [1, 0], [0, 1], [0, 0])


def top(probs: np.ndarray | None) -> int | None:
    return None if probs is None else int(np.argmax(probs))


def test_auto_is_the_models_own_fusion() -> None:
    assert top(fuse(ROWS, np.array(BOTH), FusionConfig())) == 1
    probs = fuse(ROWS, np.array(BOTH), FusionConfig())
    assert np.isclose(probs.sum(), 1.0)


def test_face_and_voice_modes_mask_the_other_modality_before_inference() -> None:
    face, voice = FusionConfig(mode="face"), FusionConfig(mode="voice")
    assert used_mask(np.array(BOTH), face).tolist() == FACE_ONLY
    assert used_mask(np.array(BOTH), voice).tolist() == VOICE_ONLY
    assert used_mask(np.array(VOICE_ONLY), face).tolist() == NONE
    assert used_mask(np.array(BOTH), FusionConfig(mode="fused")).tolist() == BOTH
    # given one modality, the model's own answer is that modality's
    assert top(fuse(ROWS, np.array(FACE_ONLY), face)) == 1
    assert fuse(ROWS, used_mask(np.array(VOICE_ONLY), face), face) is None


def test_fused_mode_weighs_the_voice_by_its_weight() -> None:
    probs = fuse(ROWS, np.array(BOTH), FusionConfig(mode="fused", voice_weight=1.0))
    expected = np.exp(log_softmax(log_softmax(FACE) + log_softmax(VOICE)))
    assert np.allclose(probs, expected)
    assert top(probs) == 4  # the surer voice wins at equal weight
    assert top(fuse(ROWS, np.array(BOTH), FusionConfig(mode="fused", voice_weight=0.0))) == 0
    assert top(fuse(ROWS, np.array(FACE_ONLY), FusionConfig(mode="fused"))) == 1  # row 0


def test_nothing_present_is_no_prediction_in_every_mode() -> None:
    for mode in ("auto", "fused", "face", "voice"):
        assert fuse(ROWS, np.array(NONE), FusionConfig(mode=mode)) is None


def test_each_modality_reports_its_own_prediction_only_when_present() -> None:
    own = modality_predictions(ROWS, np.array(FACE_ONLY))
    assert top(own["face"]) == 0 and own["voice"] is None


def test_home_assistant_attributes_show_each_modality_and_the_mode() -> None:
    """The discovery's attribute template, rendered by Jinja as Home Assistant does."""
    env = jinja2.Environment()
    env.filters["tojson"] = json.dumps
    template = env.from_string(ATTRIBUTES_TEMPLATE)
    probs = {"happy": 0.9, "sad": 0.1}
    own = {"face": {"label": "happy", "confidence": 0.8}, "voice": None}
    state = EmotionState("happy", 0.9, probs, True, False, 0, 1, "m", by_modality=own)
    attributes = json.loads(template.render(value_json=state.to_dict()))
    assert attributes == {
        **probs,
        "face": "happy",
        "face_confidence": 0.8,
        "voice": None,
        "voice_confidence": None,
        "fusion": "auto",
    }
    blank = EmotionState.blank("paused", 0, 2, "m", fusion="face").to_dict()
    assert json.loads(template.render(value_json=blank))["fusion"] == "face"
