"""A real person, face and voice together: the real daemon (`emoedge run`, file sources, the
bundled default model) on each of the six CREMA-D clips in ../shared/data/crema-d-sample
finds the face, hears the voice and publishes a prediction over a real broker."""

from __future__ import annotations

import pytest

from tests.fixtures_daemon import clip_states

pytestmark = [pytest.mark.data, pytest.mark.slow]
EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_the_daemon_sees_and_hears_the_actor(shared_data, tmp_path, mqtt_broker, emotion):
    clip = shared_data / "crema-d-sample" / f"1001_DFA_{emotion}_XX"
    states = clip_states(clip.with_suffix(".flv"), clip.with_suffix(".wav"), tmp_path, mqtt_broker)
    both = [s for s in states if s["modalities"] == {"face": True, "audio": True}]
    assert both, f"no state with face and voice together: {[s['modalities'] for s in states]}"
    predicted = [s for s in both if s["state"] == "present"]
    assert predicted, "face and voice were seen but no emotion was published"
    own = predicted[-1]["by_modality"]
    assert own["face"]["label"] and own["voice"]["label"]  # each modality said something
