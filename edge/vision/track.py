"""Detect-then-track: the face detector runs now and then, the box is followed in between.

Detection is the pipeline's most expensive stage after the model. A face moves little between
two cycles, so the last box is reused until `interval_s` has passed; the crop it gives is
compared with the crop taken right after the detection (the anchor). When they differ by more
than `max_drift` (the face moved, turned or left), the anchor is searched for around the box
(template matching through OpenCV, a small fraction of a detection's cost; for a face turned
level, the anchor as the frame holds it, before levelling) and the box is moved to the best
match, keeping its roll; if even that crop differs by more than `max_drift`, or OpenCV is
absent, the detection is brought forward to the current cycle. The tracker takes every crop
it compares, so `locate` hands the pipeline both the box and the model's face input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol, TypeVar

import numpy as np

from edge.core.opencv import optional_cv2
from edge.vision.detect import Detection, FaceDetector, largest_face
from edge.vision.face import FaceConfig, crop_face, crop_gray, resize_image, square_box, to_gray

SEARCH = 0.25  # how far the anchor is searched for, as a fraction of the crop's side

T = TypeVar("T")


class StageTimer(Protocol):
    """Where the stages (detect, crop, track) are timed: edge.daemon.stats.Stats."""

    def timed(self, stage: str, work: Callable[..., T], *args: Any) -> T: ...


class _Untimed:
    def timed(self, stage: str, work: Callable[..., T], *args: Any) -> T:
        return work(*args)


class FaceTracker:
    """The current face box and its crop: refreshed by the detector when due, followed by
    template matching when the crop drifted, re-detected when it cannot be followed."""

    def __init__(
        self, detector: FaceDetector, face: FaceConfig, timer: StageTimer | None = None
    ) -> None:
        self.detector = detector
        self.face = face
        self.timer = timer or _Untimed()
        self.interval_s = detector.cfg.interval_s
        self.max_drift = detector.cfg.max_drift
        self.box: Detection | None = None
        self.detections = 0
        self.followed = 0
        self._detected_at: float | None = None
        self._reference: np.ndarray | None = None
        self._template: np.ndarray | None = None

    def locate(self, image: np.ndarray, t: float) -> tuple[Detection | None, np.ndarray | None]:
        """The face box in `image` (taken at `t`) and its crop, the model's face input (None,
        None without a face): the detector runs when due, else the last box is followed, and
        the detector runs at once when it cannot be."""
        if self.due(t):
            return self._detect_and_anchor(image, t)
        if self.box is None:
            return None, None
        crop = self.timer.timed("crop", crop_face, image, self.box.box, self.face, self.box.roll)
        followed = self.timer.timed("track", self.follow, image, crop)
        return self._detect_and_anchor(image, t) if followed is None else followed

    def _detect_and_anchor(
        self, image: np.ndarray, t: float
    ) -> tuple[Detection | None, np.ndarray | None]:
        box = self.timer.timed("detect", self.detect, image, t)
        if box is None:
            return None, None
        crop = self.timer.timed("crop", crop_face, image, box.box, self.face, box.roll)
        upright = (
            self.timer.timed("track", crop_gray, image, box.box, self.face) if box.roll else None
        )
        self.anchor(crop, upright)
        return box, crop

    def due(self, t: float) -> bool:
        """True when the detector must run at time `t` (never run, interval passed, or time
        went backwards)."""
        last = self._detected_at
        return last is None or not 0 <= t - last < self.interval_s

    def detect(self, image: np.ndarray, t: float) -> Detection | None:
        """Run the detector on `image` taken at `t`; the new box (None: no face)."""
        self.box = largest_face(self.detector, image)
        self.detections += 1
        self._detected_at = t
        return self.box

    def anchor(self, crop: np.ndarray, upright: np.ndarray | None = None) -> None:
        """Remember the crop (model input) of a freshly detected box: later crops are compared
        with it. The template searched for in the frame when they drift is the box's crop as
        the frame holds it: `upright` (0..255 gray, not levelled) for a face that was turned
        level, else the crop itself."""
        self._reference = crop
        self._template = None if upright is None else np.rint(upright).astype(np.float32)

    def drifted(self, crop: np.ndarray) -> bool:
        """True when `crop` differs from the anchored one by more than `max_drift` (mean
        absolute difference as a fraction of full scale)."""
        if self._reference is None:
            return True
        cv2 = optional_cv2()
        if cv2 is None:
            difference = float(np.abs(crop - self._reference).mean())
        else:  # the same in one call
            difference = cv2.norm(crop, self._reference, cv2.NORM_L1) / crop.size
        return difference * self.face.std > self.max_drift

    def follow(self, image: np.ndarray, crop: np.ndarray) -> tuple[Detection, np.ndarray] | None:
        """The box and crop to use in `image` between detections: the current ones while the
        crop has not drifted, else the box moved to where the anchor matches best if its crop
        is within `max_drift` of the anchor; None when the detector has to run."""
        if self.box is None:
            return None
        if not self.drifted(crop):
            return self.box, crop
        moved = self._recentred(image, self.box)
        if moved is None:
            return None
        crop = crop_face(image, moved.box, self.face, moved.roll)
        if self.drifted(crop):
            return None
        self.box = moved
        self.followed += 1
        return moved, crop

    def _recentred(self, image: np.ndarray, box: Detection) -> Detection | None:
        """`box` shifted to the best match (least squared difference) of the anchor within
        SEARCH of the crop's side, at the model crop's resolution; None without OpenCV."""
        cv2 = optional_cv2()
        if cv2 is None or self._reference is None:
            return None
        if self._template is None:  # the anchor as 0..255 gray
            gray = (self._reference[0] * self.face.std + self.face.mean) * 255.0
            self._template = np.clip(np.rint(gray), 0, 255).astype(np.float32)
        height, width = image.shape[:2]
        x0, y0, side = square_box(box.box, self.face, width, height)
        pad = int(round(side * SEARCH))
        rx0, ry0 = max(x0 - pad, 0), max(y0 - pad, 0)
        rx1, ry1 = min(x0 + side + pad, width), min(y0 + side + pad, height)
        scale = self.face.size / side
        size = (max(int(round((rx1 - rx0) * scale)), self.face.size),
                max(int(round((ry1 - ry0) * scale)), self.face.size))  # fmt: skip
        region = resize_image(to_gray(image[ry0:ry1, rx0:rx1]), size)
        scores = cv2.matchTemplate(region, self._template, cv2.TM_SQDIFF)
        best_x, best_y = cv2.minMaxLoc(scores)[2]
        dx, dy = rx0 + best_x / scale - x0, ry0 + best_y / scale - y0
        return replace(box, x=box.x + dx, y=box.y + dy)
