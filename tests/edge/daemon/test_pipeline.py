"""One cycle for real (BlazeFace, the audio front end, ONNX Runtime on a tiny exported model):
masks per modality, no inference when both are missing, the model sees exactly what an
independent computation of the same inputs gives, and detect-then-track reuses the face box
between detections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.audio.frontend import window_features
from edge.audio.ring import AudioRing
from edge.backends import load_artifact
from edge.capture import AudioChunk, ReplayClock
from edge.capture.camera import FileCamera
from edge.capture.microphone import read_audio_file
from edge.core.config import DetectorConfig, EventConfig, SmoothingConfig
from edge.core.fusion import FusionConfig
from edge.daemon.pipeline import Pipeline
from edge.daemon.stats import Stats
from edge.vision.detect import largest_face, load_detector
from edge.vision.face import (
    FaceConfig,
    crop_face,
    normalize_face,
    resize_image,
    square_box,
    to_gray,
)
from tests.fixtures_daemon import SAMPLE

Replay = tuple[list, np.ndarray, int, ReplayClock]


@pytest.fixture(scope="module")
def replay() -> Replay:
    """All frames of the sample (timestamps on a non-realtime clock) and its audio."""
    clock = ReplayClock(realtime=False)
    camera = FileCamera(SAMPLE / "sample.avi", clock)
    camera.open()
    frames = []
    while (frame := camera.read()) is not None:
        frames.append(frame)
    camera.close()
    wave, rate = read_audio_file(SAMPLE / "sample.flac")
    return frames, wave, rate, clock


def make_pipeline(
    model: Path,
    wave: np.ndarray,
    rate: int,
    clock: ReplayClock,
    detector: DetectorConfig | None = None,
) -> Pipeline:
    runner = load_artifact(model, "onnxruntime", threads=1)
    ring = AudioRing(rate, capacity_s=len(wave) / rate + 1)
    ring.write(AudioChunk(wave, clock.at(len(wave) / rate), rate))
    return Pipeline(
        runner,
        load_detector(detector or DetectorConfig()),
        ring,
        SmoothingConfig(method="ema", alpha=1.0),
        EventConfig(threshold=0.0, hold_s=0.0, heartbeat_s=1e9),
        Stats(),
    )


@pytest.mark.parametrize(
    ("seconds", "mask"),
    [(1.0, [1, 0]), (4.0, [1, 1]), (8.0, [0, 1]), (12.5, [0, 0])],
    ids=["face-only", "fused", "voice-only", "absent"],
)
def test_modalities_over_the_sample(
    replay: Replay, tiny_model: Path, seconds: float, mask: list
) -> None:
    frames, wave, rate, clock = replay
    pipeline = make_pipeline(tiny_model, wave, rate, clock)
    frame = frames[int(seconds * 10)]
    result = pipeline.cycle(frame, frame.t)
    assert result.inputs.mask.tolist() == mask
    if mask == [0, 0]:
        assert result.probs is None and "inference" not in pipeline.stats.snapshot()["latency"]
    else:
        assert result.probs.shape == (7,) and result.probs.sum() == pytest.approx(1, abs=1e-5)


def test_model_sees_the_independently_computed_inputs(replay: Replay, tiny_model: Path) -> None:
    frames, wave, rate, clock = replay
    pipeline = make_pipeline(tiny_model, wave, rate, clock)
    runner = pipeline.runner
    frame = frames[45]  # 4.5 s: face and voice
    result = pipeline.cycle(frame, frame.t)

    box = largest_face(load_detector(DetectorConfig()), frame.image)
    face = crop_face(frame.image, box.box, runner.manifest.face, box.roll)
    end = int(round(4.5 * rate))
    audio = window_features(wave[end - 3 * rate : end], runner.manifest.audio)
    expected = runner.predict(face[None], audio[None], np.array([[1.0, 1.0]], np.float32))[0]
    np.testing.assert_allclose(result.probs, expected, atol=1e-5)
    assert result.state is not None and result.state.face and result.state.audio
    assert result.state.probabilities == pytest.approx(
        dict(zip(runner.manifest.labels, expected.tolist(), strict=True)), abs=1e-4
    )


def test_the_state_says_what_each_modality_said_and_the_fusion_mode(
    replay: Replay, tiny_model: Path
) -> None:
    frames, wave, rate, clock = replay
    pipeline = make_pipeline(tiny_model, wave, rate, clock)
    frame = frames[45]  # 4.5 s: face and voice
    result = pipeline.cycle(frame, frame.t)
    inputs = result.inputs
    rows = pipeline.runner.outputs(inputs.face[None], inputs.audio[None], inputs.mask[None])[0]
    own = result.state.by_modality
    assert result.state.fusion == "auto"
    for name, row in (("face", 1), ("voice", 2)):
        probs = np.exp(rows[row] - rows[row].max())
        probs /= probs.sum()
        assert own[name]["label"] == pipeline.runner.manifest.labels[int(probs.argmax())]
        assert own[name]["confidence"] == pytest.approx(probs.max(), abs=1e-4)
    payload = result.state.to_dict()
    assert payload["by_modality"] == own and payload["fusion"] == "auto"


@pytest.mark.parametrize(("mode", "mask"), [("face", [1, 0]), ("voice", [0, 1])])
def test_a_single_modality_mode_masks_the_other_before_inference(
    replay: Replay, tiny_model: Path, mode: str, mask: list[int]
) -> None:
    frames, wave, rate, clock = replay
    pipeline = make_pipeline(tiny_model, wave, rate, clock)
    pipeline.set_fusion(FusionConfig(mode=mode))
    frame = frames[45]  # 4.5 s: face and voice in the clip
    result = pipeline.cycle(frame, frame.t)
    assert result.inputs.mask.tolist() == mask
    inputs = result.inputs
    expected = pipeline.runner.predict(inputs.face[None], inputs.audio[None], inputs.mask[None])
    np.testing.assert_allclose(result.probs, expected[0], atol=1e-5)
    state = result.state
    assert (state.face, state.audio) == tuple(bool(m) for m in mask)
    unused = "voice" if mode == "face" else "face"
    assert state.by_modality[unused] is None and state.by_modality[mode] is not None
    assert state.fusion == mode


def test_states_and_events_follow_the_clip(replay: Replay, tiny_model: Path) -> None:
    frames, wave, rate, clock = replay
    pipeline = make_pipeline(tiny_model, wave, rate, clock)
    results = [pipeline.cycle(f, f.t) for f in frames[::2]]  # 5 Hz over the clip
    states = [r.state for r in results if r.state is not None]
    events = [r.event for r in results if r.event is not None]
    assert states[-1].state == "absent" and states[-1].label is None
    assert events[0].previous is None and events[-1].current is None
    assert [s.seq for s in states] == sorted(s.seq for s in states)
    published = [m for r in results for m in (r.event, r.state) if m is not None]  # the order
    assert [m.seq for m in published] == sorted(m.seq for m in published)  # the daemon sends
    assert pipeline.stats.cycles == len(frames[::2])


def test_the_box_is_reused_until_the_interval_has_passed(replay: Replay, tiny_model: Path) -> None:
    frames, wave, rate, clock = replay
    detector = DetectorConfig(interval_s=1.0, max_drift=1.0)  # the crop never counts as drifted
    pipeline = make_pipeline(tiny_model, wave, rate, clock, detector)
    results = [pipeline.cycle(f, f.t) for f in frames[:30]]  # 3 s of the face part, 10 fps
    assert pipeline.tracker is not None and pipeline.tracker.detections == 3
    boxes = [r.inputs.box for r in results]
    assert all(box is not None for box in boxes) and len({id(b) for b in boxes}) == 3
    assert boxes[9] is boxes[0] and boxes[29] is not boxes[0]
    later = results[5]  # the model is fed the crop of the reused box in the later frame
    face = crop_face(frames[5].image, boxes[0].box, pipeline.face_cfg, boxes[0].roll)
    np.testing.assert_array_equal(later.inputs.face, face)
    assert pipeline.stats.snapshot()["latency"].keys() >= {"detect", "crop", "smoothing"}


def test_a_face_that_leaves_is_noticed_at_once(replay: Replay, tiny_model: Path) -> None:
    """The interval is long; the reused box's crop changing (drift) brings detection forward."""
    frames, wave, rate, clock = replay
    detector = DetectorConfig(interval_s=100.0, max_drift=0.06)
    pipeline = make_pipeline(tiny_model, wave, rate, clock, detector)
    assert pipeline.cycle(frames[55], frames[55].t).inputs.mask[0] == 1
    assert pipeline.cycle(frames[56], frames[56].t).inputs.box is not None
    gone = pipeline.cycle(frames[70], frames[70].t)  # the face-free part of the clip
    assert gone.inputs.box is None and gone.inputs.mask[0] == 0
    assert pipeline.tracker is not None and pipeline.tracker.detections == 2


def test_interval_zero_detects_on_every_cycle(replay: Replay, tiny_model: Path) -> None:
    frames, wave, rate, clock = replay
    pipeline = make_pipeline(tiny_model, wave, rate, clock, DetectorConfig(interval_s=0.0))
    for frame in frames[:5]:
        pipeline.cycle(frame, frame.t)
    assert pipeline.tracker is not None and pipeline.tracker.detections == 5


def test_the_crop_is_grown_by_the_margin_and_lifted_above_the_box() -> None:
    box = (100.0, 100.0, 50.0, 50.0)  # centre (125, 125)
    assert square_box(box, FaceConfig(margin=0.0, lift=0.0), 640, 480) == (100, 100, 50)
    assert square_box(box, FaceConfig(margin=0.1, lift=0.0), 640, 480) == (95, 95, 60)
    assert square_box(box, FaceConfig(margin=0.1, lift=0.2), 640, 480) == (95, 85, 60)
    assert square_box((0.0, 0.0, 50.0, 50.0), FaceConfig(margin=0.1, lift=0.2), 640, 480)[1] == 0


def test_crop_is_the_crop_of_the_gray_frame(replay: Replay) -> None:
    """crop_face converts only the crop to gray: the same input as converting the frame."""
    frames = replay[0]
    cfg, box = FaceConfig(), (70.3, 20.8, 80.1, 84.6)
    gray = to_gray(frames[3].image)
    x0, y0, side = square_box(box, cfg, gray.shape[1], gray.shape[0])
    expected = normalize_face(resize_image(gray[y0 : y0 + side, x0 : x0 + side], cfg.size), cfg)
    np.testing.assert_array_equal(crop_face(frames[3].image, box, cfg), expected)
