"""The Raspberry Pi camera path with a fake `picamera2` package (tests/fakes) on sys.path:
the documented calls in the documented order, detection on the lores Y plane, and clear
errors without the package or the camera. Everything but the camera library runs for real."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from edge.capture.camera import Picamera2Camera
from edge.core.config import CameraConfig, DetectorConfig
from edge.core.errors import DeviceError
from edge.vision.blazeface import BlazeFaceDetector
from edge.vision.detect import largest_face
from tests.fixtures_daemon import FAKES, SAMPLE

CONFIG = CameraConfig(source="picamera2", width=640, height=480, fps=30.0,
                      lores_width=320, lores_height=240)  # fmt: skip


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(FAKES))
    sys.modules.pop("picamera2", None)
    import picamera2

    picamera2.CALLS.clear()
    yield picamera2
    sys.modules.pop("picamera2", None)


def face_scene(path: Path) -> str:
    """The first frame of the demo sample (a face) as the fake camera's scene (.npy)."""
    import cv2

    capture = cv2.VideoCapture(str(SAMPLE / "sample.avi"))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    np.save(path, np.ascontiguousarray(bgr[..., ::-1]))
    return str(path)


def test_documented_calls_in_order(fake_picamera2: ModuleType) -> None:
    camera = Picamera2Camera(CONFIG)
    camera.open()
    frames = [camera.read() for _ in range(3)]
    camera.close()
    names = [name for name, _ in fake_picamera2.CALLS]
    assert names == ["Picamera2", "create_video_configuration", "configure", "start", "stop",
                     "close"]  # fmt: skip
    requested = fake_picamera2.CALLS[1][1]
    assert requested["main"]["size"] == (640, 480)
    assert requested["lores"] == {"size": (320, 240), "format": "YUV420"}
    assert [f.image.shape for f in frames] == [(240, 320)] * 3  # the luma plane only
    assert frames[0].t < frames[1].t < frames[2].t
    assert [f.index for f in frames] == [0, 1, 2]


def test_lores_luma_is_what_the_detector_sees(
    fake_picamera2: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FAKE_PICAMERA2_IMAGE", face_scene(tmp_path / "scene.npy"))
    camera = Picamera2Camera(CONFIG)
    camera.open()
    frame = camera.read()
    camera.close()
    face = largest_face(BlazeFaceDetector(DetectorConfig()), frame.image)
    assert face is not None
    assert 0 <= face.x < 320 and 0 <= face.y < 240 and 30 < face.w < 240


def test_no_camera_is_a_device_error(
    fake_picamera2: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PICAMERA2_ABSENT", "1")
    with pytest.raises(DeviceError, match="no Raspberry Pi camera found"):
        Picamera2Camera(CONFIG).open()


def test_missing_package_is_a_device_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(DeviceError, match="needs the picamera2 package"):
        Picamera2Camera(CONFIG).open()
