"""Face detection: BlazeFace (LiteRT, numpy decoding) on the demo sample's frames; the Haar
fallback where the installed OpenCV has it, otherwise a clear error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.core.config import DetectorConfig
from edge.core.errors import DeviceError
from edge.vision.blazeface import ASSETS, FULL_RANGE, anchors, non_max_suppression
from edge.vision.detect import Detection, largest_face, load_detector
from tests.fixtures_daemon import SAMPLE


def sample_frame(index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(SAMPLE / "sample.avi"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = capture.read()
    capture.release()
    assert ok
    return np.ascontiguousarray(bgr[..., ::-1])


def test_licence_notice_ships_with_the_model() -> None:
    assert "Apache License" in (ASSETS / "LICENSE").read_text()
    assert "mediapipe" in (ASSETS / "NOTICE.md").read_text().lower()


def test_anchor_layout() -> None:
    a = anchors()
    assert a.shape == (896, 2)
    assert a[0] == pytest.approx([0.5 / 16, 0.5 / 16]) and a[1] == pytest.approx(a[0])
    assert a[512] == pytest.approx([0.5 / 8, 0.5 / 8])  # first stride-16 cell
    assert (a > 0).all() and (a < 1).all()


def test_full_range_anchor_layout() -> None:
    a = anchors(FULL_RANGE)
    assert a.shape == (2304, 2)  # 48 × 48 cells at stride 4, one anchor each, row by row
    assert a[0] == pytest.approx([0.5 / 48, 0.5 / 48])
    assert a[1] == pytest.approx([1.5 / 48, 0.5 / 48])
    assert a[48] == pytest.approx([0.5 / 48, 1.5 / 48])


def on_a_wall(frame: np.ndarray, times: int) -> tuple[np.ndarray, int, int]:
    """The frame centred on a plain wall `times` its size (the person that much farther
    away), and where it sits (x, y)."""
    h, w = frame.shape[:2]
    wall = np.full((h * times, w * times, 3), 110, np.uint8)
    y, x = (h * times - h) // 2, (w * times - w) // 2
    wall[y : y + h, x : x + w] = frame
    return wall, x, y


def detector(reach: str) -> object:
    return load_detector(DetectorConfig(reach=reach))


def test_both_reaches_box_a_face_alike() -> None:
    """The full-range model's boxes come in the short-range model's convention, the one a
    model's framing is measured in: same centre and side within a tenth of the side."""
    short, full = (largest_face(detector(r), sample_frame(0)) for r in ("short", "full"))
    assert short is not None and full is not None
    assert full.w == pytest.approx(short.w, rel=0.1)
    assert abs((full.x + full.w / 2) - (short.x + short.w / 2)) < 0.1 * short.w
    assert abs((full.y + full.h / 2) - (short.y + short.h / 2)) < 0.1 * short.w


def test_a_face_far_from_the_camera_needs_the_full_range_model() -> None:
    """The sample's face in a frame four times as large (about 19 px of the short-range
    model's 128): only the full-range model finds it; `auto` falls back to it there, and
    where the short-range model finds the face, auto's box is the short-range one (the roll,
    measured again on the region around the face, may come from either)."""
    near = sample_frame(0)
    far, x, y = on_a_wall(near, 4)
    assert largest_face(detector("short"), far) is None
    face = largest_face(detector("full"), far)
    assert face is not None
    box = largest_face(detector("short"), near)
    assert abs(face.x + face.w / 2 - (x + box.x + box.w / 2)) < 0.2 * box.w
    assert abs(face.y + face.h / 2 - (y + box.y + box.h / 2)) < 0.2 * box.w
    assert largest_face(detector("auto"), far).box == face.box
    assert largest_face(detector("auto"), near).box == box.box
    assert largest_face(detector("auto"), sample_frame(100)) is None  # nobody there


def test_a_face_at_the_edge_of_the_short_range_is_boxed_by_the_full_range_model() -> None:
    """Three times as far, the short-range model still finds the sample's face in this frame
    (about 22 px of its 128) but boxes it too wide; `auto` takes the full-range box there,
    which keeps the face's size."""
    near = largest_face(detector("short"), sample_frame(3))
    far = on_a_wall(sample_frame(3), 3)[0]
    short, full = (largest_face(detector(r), far) for r in ("short", "full"))
    assert near is not None and short is not None and full is not None
    assert short.w > 1.1 * near.w
    assert full.w == pytest.approx(near.w, rel=0.15)
    assert largest_face(detector("auto"), far).box == full.box


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array(
        [[0.1, 0.1, 0.5, 0.5, 0.7], [0.12, 0.1, 0.52, 0.5, 0.9], [0.6, 0.6, 0.9, 0.9, 0.8]],
        np.float32,
    )
    kept = non_max_suppression(boxes, 0.3)
    assert kept[:, 4].tolist() == pytest.approx([0.9, 0.8])


def test_blazeface_finds_the_face_and_only_when_there_is_one() -> None:
    detector = load_detector(DetectorConfig(kind="blazeface"))
    face = largest_face(detector, sample_frame(0))
    assert isinstance(face, Detection) and face.score >= 0.5
    h, w = sample_frame(0).shape[:2]
    assert face.x >= 0 and face.x + face.w <= w + 2 and face.y >= 0 and face.y + face.h <= h + 2
    assert 0.2 * h < face.h < 0.9 * h  # a portrait: the face is a good part of the frame
    assert largest_face(detector, sample_frame(100)) is None  # the face-free part of the clip
    gray = cv2.cvtColor(sample_frame(0), cv2.COLOR_RGB2GRAY)
    assert largest_face(detector, gray) is not None  # a gray frame (picamera2 lores luma)


def test_min_size_filters_small_faces() -> None:
    detector = load_detector(DetectorConfig(kind="blazeface", min_size=0.95))
    assert largest_face(detector, sample_frame(0)) is None


def test_haar_fallback() -> None:
    if not hasattr(cv2, "CascadeClassifier"):
        with pytest.raises(DeviceError, match="CascadeClassifier"):
            load_detector(DetectorConfig(kind="haar"))
        pytest.skip(f"OpenCV {cv2.__version__} has no CascadeClassifier (the error was checked)")
    try:
        detector = load_detector(DetectorConfig(kind="haar"))
    except DeviceError as error:
        assert "opencv-data" in str(error)
        pytest.skip(f"no cascade files here: {error}")
    assert largest_face(detector, sample_frame(0)) is not None


def test_the_cascade_reports_boxes_as_blazeface_would() -> None:
    from edge.vision.haar import BLAZEFACE_DROP, BLAZEFACE_SIDE, as_blazeface_box

    box = as_blazeface_box(100.0, 50.0, 80.0, 80.0)  # centre (140, 90)
    assert box.w == box.h == 80.0 * BLAZEFACE_SIDE
    assert box.x + box.w / 2 == 140.0  # the same centre column
    assert box.y + box.h / 2 == 90.0 + BLAZEFACE_DROP * 80.0  # lower
