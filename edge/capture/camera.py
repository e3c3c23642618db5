"""Camera sources: Raspberry Pi camera (picamera2), OpenCV devices and pipelines, video files.

Libraries are imported when a source opens; a missing library or device is a DeviceError,
an unreadable video file a DataError.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.capture import Frame, ReplayClock
from edge.core.errors import DataError, DeviceError

if TYPE_CHECKING:  # annotations only, so that the config can import the source registries
    from edge.core.config import CameraConfig

log = logging.getLogger(__name__)


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as error:
        raise DeviceError(
            f"OpenCV is not installed ({error}); pip install opencv-python-headless"
        ) from None
    return cv2


class Picamera2Camera:
    """The Raspberry Pi camera. Detection runs on the low-resolution `lores` stream (YUV420),
    whose Y plane is the gray image the face model needs; `main` is configured alongside."""

    def __init__(self, cfg: CameraConfig) -> None:
        self.cfg = cfg
        self.camera: Any = None
        self.index = 0

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as error:
            raise DeviceError(
                f"camera source 'picamera2' needs the picamera2 package ({error}); on Raspberry "
                "Pi OS: apt install python3-picamera2 and a venv with --system-site-packages"
            ) from None
        try:
            self.camera = Picamera2()
        except (IndexError, RuntimeError, OSError) as error:
            raise DeviceError(f"no Raspberry Pi camera found ({error})") from None
        c = self.cfg
        config = self.camera.create_video_configuration(
            main={"size": (c.width, c.height), "format": "RGB888"},
            lores={"size": (c.lores_width, c.lores_height), "format": "YUV420"},
            controls={"FrameRate": c.fps},
        )
        try:
            self.camera.configure(config)
            self.camera.start()
        except (RuntimeError, OSError, ValueError) as error:
            self.close()
            raise DeviceError(f"cannot start the Raspberry Pi camera ({error})") from None

    def read(self) -> Frame | None:
        yuv = self.camera.capture_array("lores")
        t = time.monotonic()
        # YUV420 arrives as (height * 3 / 2, stride): the first `height` rows are luma.
        gray = np.ascontiguousarray(yuv[: self.cfg.lores_height, : self.cfg.lores_width])
        self.index += 1
        return Frame(gray, t, self.index - 1)

    def close(self) -> None:
        if self.camera is not None:
            try:
                self.camera.stop()
            finally:
                self.camera.close()
                self.camera = None


def _open_capture(target: int | str) -> Any:
    """cv2.VideoCapture for an index, a GStreamer pipeline (contains '!') or a file."""
    cv2 = _cv2()
    if isinstance(target, str) and "!" in target:
        return cv2.VideoCapture(target, cv2.CAP_GSTREAMER)
    return cv2.VideoCapture(target)


def _rgb(bgr: np.ndarray) -> np.ndarray:
    """OpenCV's BGR frame as RGB (one pass in OpenCV); gray frames as they are."""
    return _cv2().cvtColor(bgr, _cv2().COLOR_BGR2RGB) if bgr.ndim == 3 else bgr


class OpenCVCamera:
    """A live OpenCV source: a V4L2/USB index or a GStreamer pipeline (Jetson CSI camera)."""

    def __init__(self, cfg: CameraConfig) -> None:
        self.cfg = cfg
        self.capture: Any = None
        self.index = 0

    def open(self) -> None:
        cv2 = _cv2()
        self.capture = _open_capture(self.cfg.device)
        if not self.capture.isOpened():
            raise DeviceError(f"cannot open camera {self.cfg.device!r} (camera.device)")
        if isinstance(self.cfg.device, int):
            self.capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            self.capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
            self.capture.set(cv2.CAP_PROP_FPS, self.cfg.fps)

    def read(self) -> Frame | None:
        ok, bgr = self.capture.read()
        t = time.monotonic()
        if not ok:
            raise DeviceError(f"camera {self.cfg.device!r} stopped delivering frames")
        self.index += 1
        return Frame(_rgb(bgr), t, self.index - 1)

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class FileCamera:
    """A video file replayed on the replay clock: frame i is stamped origin + i / fps."""

    def __init__(self, path: str | Path, clock: ReplayClock, loop: bool = False) -> None:
        self.path = Path(path)
        self.clock = clock
        self.loop = loop
        self.capture: Any = None
        self.fps = 0.0
        self.index = 0

    def open(self) -> None:
        if not self.path.is_file():
            raise DataError(f"video file not found: {self.path}")
        cv2 = _cv2()
        self.capture = _open_capture(str(self.path))
        ok = self.capture.isOpened() and self.capture.grab()
        if not ok:
            self.close()
            raise DataError(f"cannot decode video file {self.path} (corrupt or unsupported)")
        self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        fps = float(self.capture.get(cv2.CAP_PROP_FPS))
        if not 0 < fps < 1000:
            self.close()
            raise DataError(f"video file {self.path} reports no usable frame rate ({fps})")
        self.fps = fps

    def read(self) -> Frame | None:
        ok, bgr = self.capture.read()
        if not ok and self.loop and self.index > 0:
            self.capture.set(_cv2().CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self.capture.read()
        if not ok:
            return None
        media_t = self.index / self.fps
        self.clock.wait_until(media_t)
        self.index += 1
        return Frame(_rgb(bgr), self.clock.at(media_t), self.index - 1)

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None
