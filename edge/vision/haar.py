"""OpenCV's Haar cascade as a fallback face detector.

opencv-python-headless 5.x ships no cascade files; Debian's `opencv-data` package (or an
OpenCV build that still has `cv2.data`) provides them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.core.config import DetectorConfig
from edge.core.errors import DeviceError
from edge.vision.detect import Detection
from edge.vision.face import to_gray

CASCADE = "haarcascade_frontalface_default.xml"
# The cascade's boxes in BlazeFace's convention, the one a model's framing (FaceConfig's margin
# and lift) is measured in: BlazeFace's box of a face is 0.88 of the cascade's side, its centre
# 0.09 of that side lower (medians over the 2,705 FER2013 validation faces both detectors find,
# MODEL_CARD.md, "Faces through the device's crop").
BLAZEFACE_SIDE = 0.88
BLAZEFACE_DROP = 0.09
SYSTEM_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")


def find_cascade(cv2: Any) -> Path:
    """The frontal-face cascade from cv2.data or the system's opencv-data; DeviceError if none."""
    dirs = [getattr(getattr(cv2, "data", None), "haarcascades", None), *SYSTEM_DIRS]
    for folder in filter(None, dirs):
        path = Path(folder) / CASCADE
        if path.is_file():
            return path
    raise DeviceError(
        f"the haar detector needs {CASCADE}, found in none of {', '.join(SYSTEM_DIRS)} or "
        'cv2.data; apt install opencv-data, or set detector.kind = "blazeface"'
    )


class HaarDetector:
    """Frontal faces with OpenCV's cascade classifier (scores are 1.0); OpenCV chooses its
    own threads."""

    def __init__(self, cfg: DetectorConfig, threads: int = 1) -> None:
        try:
            import cv2
        except ImportError as error:
            raise DeviceError(f"the haar detector needs OpenCV ({error})") from None
        self.cfg = cfg
        classifier = getattr(cv2, "CascadeClassifier", None) or getattr(
            getattr(cv2, "xobjdetect", None), "CascadeClassifier", None
        )
        if classifier is None:
            raise DeviceError(
                f"this OpenCV ({cv2.__version__}) has no CascadeClassifier: OpenCV 5 moved it to "
                "opencv-contrib; install OpenCV 4.x (e.g. python3-opencv) or "
                'opencv-contrib-python-headless, or set detector.kind = "blazeface"'
            )
        path = find_cascade(cv2)
        self.classifier = classifier(str(path))
        if self.classifier.empty():
            raise DeviceError(f"OpenCV could not load the cascade {path}")

    def detect(self, image: np.ndarray) -> list[Detection]:
        gray = to_gray(image)
        side = max(int(self.cfg.min_size * min(gray.shape)), 16)
        boxes = self.classifier.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side)
        )
        return [as_blazeface_box(float(x), float(y), float(w), float(h)) for x, y, w, h in boxes]


def as_blazeface_box(x: float, y: float, w: float, h: float) -> Detection:
    """A cascade's box as BlazeFace would box the same face (same centre column; scaled by
    BLAZEFACE_SIDE, moved down by BLAZEFACE_DROP of its side), so that one framing serves both
    detectors."""
    cx, cy = x + w / 2, y + h / 2 + BLAZEFACE_DROP * h
    w, h = w * BLAZEFACE_SIDE, h * BLAZEFACE_SIDE
    return Detection(cx - w / 2, cy - h / 2, w, h, 1.0)
