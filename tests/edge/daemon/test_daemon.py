"""End to end: `emoedge run --config FILE` replays the sample through the tiny model to a real
Mosquitto; a real subscriber must receive what the model predicts for that clip (computed
here by running the same backend on the same inputs). SIGTERM ends it cleanly."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import numpy as np
import pytest

from edge.audio.ring import AudioRing
from edge.backends import load_artifact
from edge.capture import AudioChunk, ReplayClock
from edge.capture.camera import FileCamera
from edge.capture.microphone import read_audio_file
from edge.core.config import DetectorConfig, EventConfig, SmoothingConfig
from edge.core.labels import LABELS
from edge.daemon.pipeline import Pipeline
from edge.daemon.stats import Stats
from edge.mqtt.messages import CommandHandler, EmotionEvent, EmotionState
from edge.vision.detect import load_detector
from tests.fixtures_daemon import SAMPLE, emoedge, finish, sample_config, write_toml
from tests.fixtures_mqtt import Broker, MessageLog, wait_for

pytestmark = pytest.mark.slow


def expected_per_frame(model: Path) -> list[tuple[np.ndarray | None, list[float]]]:
    """(probabilities or None, mask) for every frame of the sample, computed offline."""
    clock = ReplayClock(realtime=False)
    camera = FileCamera(SAMPLE / "sample.avi", clock)
    camera.open()
    wave, rate = read_audio_file(SAMPLE / "sample.flac")
    ring = AudioRing(rate, len(wave) / rate + 1)
    ring.write(AudioChunk(wave, clock.at(len(wave) / rate), rate))
    pipeline = Pipeline(
        load_artifact(model, "onnxruntime", threads=1),
        load_detector(DetectorConfig(interval_s=0.0)),
        ring,
        SmoothingConfig(alpha=1.0),
        EventConfig(threshold=0.0, hold_s=0.0),
        Stats(),
    )
    out = []
    while (frame := camera.read()) is not None:
        result = pipeline.cycle(frame, frame.t)
        out.append((result.probs, result.inputs.mask.tolist()))
    camera.close()
    return out


def exact_config(model: Path, broker: Broker, prefix: str, **overrides: dict) -> dict:
    """No smoothing, no hold, no threshold: every state is one cycle's model output; the face
    detector runs on every cycle (the daemon may skip frames, so a reused box could come
    from another frame than offline)."""
    return sample_config(
        model,
        broker.mqtt_table(prefix=prefix),
        smoothing={"method": "ema", "alpha": 1.0},
        events={"threshold": 0.0, "hold_s": 0.0, "heartbeat_s": 0.3},
        detector={"interval_s": 0.0},
        queues={"max_audio_wait_s": 5.0},
        **overrides,
    )


def test_subscriber_receives_what_the_model_predicts_for_the_clip(
    tmp_path: Path, tiny_model: Path, mqtt_broker: Broker
) -> None:
    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    config = write_toml(tmp_path / "c.toml", exact_config(tiny_model, mqtt_broker, prefix))
    log = MessageLog(mqtt_broker, f"{prefix}/testcam/#")
    try:
        code, _, err = finish(emoedge("run", "--config", str(config)), timeout=300)
    finally:
        log.close()
    assert code == 0, err
    assert "Traceback" not in err

    offline = expected_per_frame(tiny_model)
    present = [(p, m) for p, m in offline if p is not None]
    states = [json.loads(p) for p in log.on(f"{prefix}/testcam/state")]
    assert len(states) >= 10
    seen_modalities = set()
    for state in states:
        if state["state"] == "absent":
            assert state["label"] is None
            assert any(p is None for p, _ in offline)
            continue
        probs = np.array([state["probabilities"][name] for name in LABELS])
        errors = [np.abs(probs - p).max() for p, _ in present]
        best = int(np.argmin(errors))
        assert errors[best] < 2e-3, f"state {state} matches no frame's prediction"
        assert state["label"] == LABELS[int(np.argmax(present[best][0]))]
        mods = state["modalities"]
        assert [float(mods["face"]), float(mods["audio"])] == present[best][1]
        seen_modalities.add((mods["face"], mods["audio"]))
    assert {(True, False), (True, True), (False, True)} <= seen_modalities
    assert states[-1]["state"] == "absent"  # the clip ends in silence without a face

    offline_labels = {LABELS[int(np.argmax(p))] for p, _ in present} | {None}
    events = [json.loads(p) for p in log.on(f"{prefix}/testcam/events")]
    assert events and {e["current"] for e in events} <= offline_labels
    assert events[-1]["current"] is None
    stats = [json.loads(p) for p in log.on(f"{prefix}/testcam/stats")]
    assert stats and stats[-1]["cycles"] > 0 and "inference" in stats[-1]["latency"]
    assert log.on(f"{prefix}/testcam/availability")[-1] == b"offline"


def test_sigterm_ends_cleanly_with_offline_published(
    tmp_path: Path, tiny_model: Path, mqtt_broker: Broker
) -> None:
    prefix = f"term{uuid.uuid4().hex[:8]}"
    loop = {"camera": {"loop": True}, "microphone": {"loop": True}}
    config = write_toml(tmp_path / "c.toml", exact_config(tiny_model, mqtt_broker, prefix, **loop))
    log = MessageLog(mqtt_broker, f"{prefix}/testcam/#")
    proc = emoedge("run", "--config", str(config))
    try:
        wait_for(lambda: len(log.on(f"{prefix}/testcam/state")) >= 3, 240, "states")
        assert log.on(f"{prefix}/testcam/availability")[-1] == b"online"
        proc.send_signal(signal.SIGTERM)
        code, _, err = finish(proc, timeout=30)
        wait_for(lambda: log.on(f"{prefix}/testcam/availability")[-1] == b"offline", 10, "offline")
    finally:
        log.close()
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    assert "Traceback" not in err
    assert "final stats" in err


def test_fake_pi_camera_through_the_whole_daemon(
    tmp_path: Path, tiny_model: Path, mqtt_broker: Broker
) -> None:
    """picamera2 (the fake on PYTHONPATH) → lores luma → BlazeFace → model → MQTT."""
    import cv2

    capture = cv2.VideoCapture(str(SAMPLE / "sample.avi"))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    np.save(tmp_path / "scene.npy", np.ascontiguousarray(bgr[..., ::-1]))
    prefix = f"pi{uuid.uuid4().hex[:8]}"
    config = exact_config(
        tiny_model,
        mqtt_broker,
        prefix,
        camera={"source": "picamera2", "width": 448, "height": 336, "fps": 15.0,
                "lores_width": 224, "lores_height": 168},
        microphone={"source": "none"},
    )  # fmt: skip
    path = write_toml(tmp_path / "c.toml", config)
    log = MessageLog(mqtt_broker, f"{prefix}/testcam/state")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "fakes"),
           "FAKE_PICAMERA2_IMAGE": str(tmp_path / "scene.npy")}  # fmt: skip
    proc = emoedge("run", "--config", str(path), env=env)
    try:
        state = wait_for(
            lambda: [s for s in map(json.loads, log.on(f"{prefix}/testcam/state"))
                     if s["modalities"]["face"]],
            240, "a state with a face",
        )[0]  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        code, _, err = finish(proc, timeout=30)
    finally:
        log.close()
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    assert state["label"] in LABELS and state["modalities"]["audio"] is False


class Recorder:
    """A Publisher that keeps what it is given (the daemon's side of the interface)."""

    def __init__(self) -> None:
        self.states: list[EmotionState] = []
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def publish_state(self, state: EmotionState) -> None:
        self.states.append(state)

    def publish_event(self, event: EmotionEvent) -> None:
        self.calls.append("event")

    def publish_stats(self, stats: dict) -> None:
        self.calls.append("stats")

    def set_command_handler(self, handler: CommandHandler) -> None:
        self.calls.append("handler")

    def stop(self) -> None:
        self.calls.append("stop")

    def problem(self) -> str | None:
        return None


def test_voice_only_daemon_ends_with_its_audio_file(tiny_model: Path) -> None:
    from edge.core.config import parse_config
    from edge.daemon.wiring import build_daemon, load_runner

    config = parse_config(
        {
            "camera": {"source": "none"},
            "microphone": {"source": "file", "path": str(SAMPLE / "sample.flac")},
            "model": {"artifact": str(tiny_model)},
            "events": {"threshold": 0.0, "hold_s": 0.0, "heartbeat_s": 0.5},
            "rates": {"inference_hz": 5.0},
        }
    )
    recorder = Recorder()
    daemon = build_daemon(config, load_runner(config.model), recorder)
    summary = daemon.run(max_seconds=60)  # the 13 s file ends it long before
    assert summary.stats["uptime_s"] < 30
    assert recorder.calls[0] == "handler" and recorder.calls[-1] == "stop"
    assert recorder.states and not any(s.face for s in recorder.states)
    assert any(s.audio for s in recorder.states)
    assert daemon.handle_command("rate", {"hz": 2.0}).ok and daemon.period == 0.5
    assert daemon.handle_command("threshold", {"confidence": 0.7}).ok
    assert daemon.pipeline.policy.threshold == 0.7


def test_the_daemon_runs_numpy_blas_on_one_thread(tiny_model: Path) -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    from edge.core.config import parse_config
    from edge.daemon.wiring import build_daemon, load_runner

    microphone = {"source": "file", "path": str(SAMPLE / "sample.flac")}
    model = {"artifact": str(tiny_model)}
    config = parse_config({"camera": {"source": "none"}, "microphone": microphone, "model": model})
    with threadpool_limits(limits=None):  # gives this test process its limits back afterwards
        build_daemon(config, load_runner(config.model), Recorder())
        blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas and all(pool["num_threads"] == 1 for pool in blas)
