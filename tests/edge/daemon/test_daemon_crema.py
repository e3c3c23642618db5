"""A real person, face and voice together: the real daemon (`emoedge run`, file sources, the
bundled default model) on each of the six CREMA-D clips in ../shared/data/crema-d-sample
finds the face, hears the voice and publishes a prediction over a real broker."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.fixtures_daemon import emoedge, finish, write_toml
from tests.fixtures_mqtt import MessageLog

pytestmark = [pytest.mark.data, pytest.mark.slow]
EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_the_daemon_sees_and_hears_the_actor(shared_data, tmp_path, mqtt_broker, emotion):
    clip = shared_data / "crema-d-sample" / f"1001_DFA_{emotion}_XX"
    prefix = f"crema{uuid.uuid4().hex[:8]}"
    config = {
        "device_id": "actor",
        "camera": {"source": "file", "path": str(clip.with_suffix(".flv"))},
        "microphone": {"source": "file", "path": str(clip.with_suffix(".wav"))},
        "model": {"artifact": "default", "backend": "onnxruntime", "threads": 1},
        "rates": {"inference_hz": 10.0},
        "events": {"threshold": 0.0, "hold_s": 0.0, "heartbeat_s": 0.2},
        "queues": {"max_audio_wait_s": 5.0},
        "mqtt": {**mqtt_broker.mqtt_table(prefix=prefix), "discovery": False},
    }
    log = MessageLog(mqtt_broker, f"{prefix}/actor/state")
    try:
        code, _, err = finish(
            emoedge("run", "--config", str(write_toml(tmp_path / "c.toml", config))), 120
        )
    finally:
        log.close()
    assert code == 0, err
    states = [json.loads(p) for p in log.on(f"{prefix}/actor/state")]
    both = [s for s in states if s["modalities"] == {"face": True, "audio": True}]
    assert both, f"no state with face and voice together: {[s['modalities'] for s in states]}"
    predicted = [s for s in both if s["state"] == "present"]
    assert predicted, "face and voice were seen but no emotion was published"
    own = predicted[-1]["by_modality"]
    assert own["face"]["label"] and own["voice"]["label"]  # each modality said something
