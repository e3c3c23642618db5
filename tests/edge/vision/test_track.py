"""Detect-then-track on the bundled sample: a drifted crop is followed by template matching
to where the face moved (the detector is not run), the followed boxes are where the detector
would put them, and without OpenCV or without a face the detector runs instead."""

from __future__ import annotations

import numpy as np
import pytest

from edge.capture import ReplayClock
from edge.capture.camera import FileCamera
from edge.core.config import DetectorConfig
from edge.vision import track
from edge.vision.detect import Detection, largest_face, load_detector
from edge.vision.face import FaceConfig, crop_face, crop_gray
from edge.vision.track import FaceTracker
from tests.fixtures_daemon import SAMPLE

FACE = FaceConfig()


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    camera = FileCamera(SAMPLE / "sample.avi", ReplayClock(realtime=False))
    camera.open()
    images = []
    while (frame := camera.read()) is not None:
        images.append(frame.image)
    camera.close()
    return images


def anchored(image: np.ndarray, interval_s: float = 100.0) -> FaceTracker:
    tracker = FaceTracker(load_detector(DetectorConfig(interval_s=interval_s)), FACE)
    box = tracker.detect(image, 0.0)
    assert box is not None
    tracker.anchor(crop_face(image, box.box, FACE, box.roll), crop_gray(image, box.box, FACE))
    return tracker


def iou(a: Detection, b: Detection) -> float:
    w = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    h = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    return w * h / (a.area + b.area - w * h)


def test_a_moved_face_is_followed_without_the_detector(frames: list[np.ndarray]) -> None:
    tracker = anchored(frames[40])
    before = tracker.box
    moved = np.roll(frames[40], (5, -9), axis=(0, 1))  # the face 9 px left, 5 px down
    crop = crop_face(moved, before.box, FACE, before.roll)
    assert tracker.drifted(crop)
    followed = tracker.follow(moved, crop)
    assert followed is not None
    box, face = followed
    assert box.x - before.x == pytest.approx(-9, abs=1.5)
    assert box.y - before.y == pytest.approx(5, abs=1.5)
    assert (box.w, box.h) == (before.w, before.h)
    np.testing.assert_array_equal(face, crop_face(moved, box.box, FACE, box.roll))
    assert not tracker.drifted(face)
    assert tracker.box is box and tracker.detections == 1 and tracker.followed == 1


def test_an_unchanged_crop_keeps_the_box(frames: list[np.ndarray]) -> None:
    tracker = anchored(frames[40])
    crop = crop_face(frames[40], tracker.box.box, FACE, tracker.box.roll)
    assert tracker.follow(frames[40], crop) == (tracker.box, crop)
    assert tracker.followed == 0


def test_a_face_that_left_cannot_be_followed(frames: list[np.ndarray]) -> None:
    tracker = anchored(frames[40])
    empty = frames[70]  # the face-free part of the clip
    assert largest_face(tracker.detector, empty) is None
    assert tracker.follow(empty, crop_face(empty, tracker.box.box, FACE, tracker.box.roll)) is None


def test_without_opencv_a_drift_means_detection(
    frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(track, "optional_cv2", lambda: None)
    tracker = anchored(frames[40])
    moved = np.roll(frames[40], (5, -9), axis=(0, 1))
    crop = crop_face(moved, tracker.box.box, FACE, tracker.box.roll)
    assert tracker.drifted(crop)  # the numpy difference
    assert tracker.follow(moved, crop) is None


def test_followed_boxes_are_where_the_detector_finds_the_face(frames: list[np.ndarray]) -> None:
    """Over the face part of the clip (it pans and zooms), detecting only when a crop cannot
    be followed: every followed box overlaps the detector's box on the same frame."""
    tracker = anchored(frames[0])
    overlaps = []
    for image in frames[1:60]:
        crop = crop_face(image, tracker.box.box, FACE, tracker.box.roll)
        followed = tracker.follow(image, crop)
        if followed is None:
            box = tracker.detect(image, 0.0)
            assert box is not None
            tracker.anchor(
                crop_face(image, box.box, FACE, box.roll), crop_gray(image, box.box, FACE)
            )
        else:
            found = largest_face(tracker.detector, image)
            assert found is not None
            overlaps.append(iou(followed[0], found))
    assert tracker.followed >= 5
    assert tracker.detections < 1 + tracker.followed  # following replaced most re-detections
    assert min(overlaps) > 0.75, overlaps
