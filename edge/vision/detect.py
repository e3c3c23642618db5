"""Face detection on camera frames: BlazeFace through LiteRT, or OpenCV's Haar cascade."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edge.core.registry import Registry

if TYPE_CHECKING:  # annotations only, so that the config can import DETECTORS
    from edge.core.config import DetectorConfig


@dataclass(frozen=True)
class Detection:
    """A face box in frame pixels (x, y, w, h), the detector's confidence and the face's roll:
    the angle of the line through its eyes, in degrees clockwise from level (0 where the
    detector sees no eyes or levelling is off)."""

    x: float
    y: float
    w: float
    h: float
    score: float
    roll: float = 0.0

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.x, self.y, self.w, self.h

    @property
    def area(self) -> float:
        return self.w * self.h


class FaceDetector(Protocol):
    cfg: DetectorConfig  # its tracking settings (interval, max_drift) too

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a uint8 RGB (H, W, 3) or gray (H, W) image."""


# Detector classes by `detector.kind`, made as cls(cfg, threads); imported when first asked for.
DETECTORS: Registry[Callable[[DetectorConfig, int], FaceDetector]] = Registry("detector")
DETECTORS.register_lazy("blazeface", "edge.vision.blazeface:BlazeFaceDetector")
DETECTORS.register_lazy("haar", "edge.vision.haar:HaarDetector")


def largest_face(detector: FaceDetector, image: np.ndarray) -> Detection | None:
    """The biggest face in `image`, or None."""
    faces = detector.detect(image)
    return max(faces, key=lambda d: d.area) if faces else None


def load_detector(cfg: DetectorConfig, threads: int = 1) -> FaceDetector:
    """The detector named by `detector.kind`, running on `threads` threads where it can."""
    return DETECTORS.get(cfg.kind)(cfg, threads)
