"""Detect-then-track: the face detector runs now and then, the box is reused in between.

Detection is the pipeline's most expensive stage after the model. A face moves little between
two cycles, so the last box is reused until `interval_s` has passed; the crop it gives is
compared with the crop taken right after the detection, and a change of more than `max_drift`
(the face moved, turned or left) brings the detection forward to the current cycle.
"""

from __future__ import annotations

import numpy as np

from edge.detect import Detection, FaceDetector, largest_face


class FaceTracker:
    """The current face box, refreshed by the detector when due or when the crop drifted."""

    def __init__(self, detector: FaceDetector) -> None:
        self.detector = detector
        self.interval_s = detector.cfg.interval_s
        self.max_drift = detector.cfg.max_drift
        self.box: Detection | None = None
        self.detections = 0
        self._detected_at: float | None = None
        self._reference: np.ndarray | None = None

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

    def anchor(self, crop: np.ndarray) -> None:
        """Remember the crop of a freshly detected box: later crops are compared with it."""
        self._reference = crop

    def drifted(self, crop: np.ndarray, scale: float) -> bool:
        """True when the crop of the reused box differs from the anchored one by more than
        `max_drift`; `scale` turns crop units into a fraction of full scale (the face
        normalisation's std)."""
        if self._reference is None:
            return True
        return float(np.abs(crop - self._reference).mean()) * scale > self.max_drift
