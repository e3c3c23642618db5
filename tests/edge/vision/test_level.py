"""A tilted head is turned level before it is cut out: BlazeFace reports the roll of the line
through the eyes (a second pass on the region around the face), and the crop turns it back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.core.config import DetectorConfig
from edge.vision import face as face_module
from edge.vision.detect import largest_face, load_detector
from edge.vision.face import FaceConfig, crop_gray
from tests.edge.vision.test_detect import sample_frame

FRAMING = FaceConfig(margin=0.0, lift=0.0)


def turned(image: np.ndarray, centre: tuple[float, float], degrees: float) -> np.ndarray:
    """`image` turned `degrees` clockwise about `centre` (OpenCV turns counter-clockwise)."""
    turn = cv2.getRotationMatrix2D(centre, -degrees, 1.0)
    return cv2.warpAffine(image, turn, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("degrees", [-25.0, 12.0, 30.0])
def test_the_crop_turns_a_tilted_bar_level(degrees: float) -> None:
    """A horizontal bar tilted clockwise by `degrees` is horizontal again in the crop."""
    level = np.zeros((400, 400), np.uint8)
    level[190:210, 100:300] = 255
    tilted = turned(level, (199.5, 199.5), degrees)
    box = (100.0, 100.0, 200.0, 200.0)
    upright = crop_gray(level, box, FRAMING)
    as_boxed = crop_gray(tilted, box, FRAMING)
    levelled = crop_gray(tilted, box, FRAMING, degrees)
    assert np.abs(levelled - upright).mean() < 0.25 * np.abs(as_boxed - upright).mean()
    rows = levelled.mean(axis=1)
    assert set(np.flatnonzero(rows > 100)) <= set(range(21, 27))  # the bar's rows only


def test_without_opencv_the_crop_stays_as_boxed(monkeypatch: pytest.MonkeyPatch) -> None:
    image = np.random.default_rng(0).integers(0, 256, (300, 300), np.uint8)
    box = (50.0, 60.0, 150.0, 150.0)
    upright = crop_gray(image, box, FRAMING)
    monkeypatch.setattr(face_module, "optional_cv2", lambda: None)
    np.testing.assert_allclose(crop_gray(image, box, FRAMING, 20.0), upright, atol=1e-3)


@pytest.mark.parametrize("degrees", [-20.0, 15.0])
def test_blazeface_measures_the_tilt_of_a_turned_face(degrees: float) -> None:
    detector = load_detector(DetectorConfig())
    frame = sample_frame(0)
    face = largest_face(detector, frame)
    assert face is not None
    centre = (face.x + face.w / 2, face.y + face.h / 2)
    tilted = largest_face(detector, turned(frame, centre, degrees))
    assert tilted is not None
    assert tilted.roll - face.roll == pytest.approx(degrees, abs=5)


def test_levelling_off_reports_no_roll() -> None:
    frame = turned(sample_frame(0), (112.0, 84.0), 20.0)
    face = largest_face(load_detector(DetectorConfig(level=False)), frame)
    assert face is not None and face.roll == 0.0


def test_a_small_face_is_measured_again_on_the_region_around_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A face a sixth of the frame wide gets a second pass (its eyes are a few pixels apart in
    the whole frame's 128 px), which measures the tilt; a face that fills much of the frame
    does not."""
    from edge.vision.blazeface import BlazeFaceDetector

    detector = load_detector(DetectorConfig())
    passes = []
    first_pass = BlazeFaceDetector._faces

    def counted(self: BlazeFaceDetector, image: np.ndarray) -> list:
        passes.append(image.shape[:2])
        return first_pass(self, image)

    monkeypatch.setattr(BlazeFaceDetector, "_faces", counted)
    frame = sample_frame(0)
    upright = largest_face(detector, frame)
    assert upright is not None and len(passes) == 1
    wide = cv2.copyMakeBorder(frame, 84, 84, 112, 112, cv2.BORDER_REPLICATE)  # twice the frame
    centre = (112 + upright.x + upright.w / 2, 84 + upright.y + upright.h / 2)
    small = largest_face(detector, turned(wide, centre, 15.0))
    assert small is not None and len(passes) == 3
    assert max(passes[2]) <= 0.5 * max(passes[1])  # the second pass saw the region only
    assert small.roll - upright.roll == pytest.approx(15.0, abs=5)
