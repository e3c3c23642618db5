"""BlazeFace (MediaPipe, Apache-2.0) run through LiteRT, decoded in numpy.

Two bundled models, both from MediaPipe's face detection: short-range (a 128×128 input, 896
anchors: 16×16 cells × 2 at stride 8, 8×8 cells × 6 at stride 16; faces within about 2 m of a
phone's front camera) and full-range (192×192, 2,304 anchors: 48×48 cells × 1 at stride 4;
faces within about 5 m, smaller in the frame). Each sees an RGB image in [-1, 1] and regresses,
per anchor, a box and six keypoints relative to its centre.
Licence and provenance: edge/assets/blazeface/.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.litert import new_interpreter
from edge.core.config import DetectorConfig
from edge.core.errors import DeviceError, ModelError
from edge.core.opencv import optional_cv2
from edge.vision.detect import Detection
from edge.vision.face import resize_image

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "blazeface"
IOU_THRESHOLD = 0.3
REFINE = 2.0  # the region around a face searched again for its eyes, in box sides


@dataclass(frozen=True)
class BlazeFaceModel:
    """One BlazeFace variant: its file, input side and anchor layers (stride, anchors per
    cell), as MediaPipe's graph for it configures them; and how its boxes become the
    short-range model's, the convention a model's framing (FaceConfig's margin and lift) is
    measured in: scaled by `side`, moved down by `drop` of their side."""

    file: Path
    size: int
    layers: tuple[tuple[int, int], ...]
    side: float = 1.0
    drop: float = 0.0
    smallest: float = 0.0  # faces narrower than this fraction of the image are beyond its reach


# Below about 20 px of its 128 px input the short-range model's boxes come out too large (a face
# 14 px wide there: a third too wide, on real video frames and on FER2013's faces alike).
SHORT_RANGE = BlazeFaceModel(
    ASSETS / "face_detection_short_range.tflite", 128, ((8, 2), (16, 6)), smallest=1 / 6
)
# The short-range box of a face is 0.964 of the full-range box's side, its centre 0.054 of that
# side lower: medians over the 2,729 FER2013 validation faces (in the frames of `emoedge
# evaluate --device-crop`) both find; on 90 real video frames of two people, 0.917 and 0.050.
FULL_RANGE = BlazeFaceModel(
    ASSETS / "face_detection_full_range_sparse.tflite", 192, ((4, 1),), side=0.964, drop=0.054
)


@lru_cache(maxsize=2)
def anchors(model: BlazeFaceModel = SHORT_RANGE) -> np.ndarray:
    """Anchor centres (N, 2) as (x, y) in [0, 1], in the model's output order."""
    parts = []
    for stride, per_cell in model.layers:
        cells = model.size // stride
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)
        parts.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(parts).astype(np.float32)


def _square(image: np.ndarray, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """The image centred on a black side² square, resized to size² RGB: an area average where
    it shrinks (a camera frame's detail and noise averaged, not aliased: edge.vision.face.
    resize_image), with OpenCV when it is there (uint8), else in numpy (float)."""
    h, w = image.shape[:2]
    cv2 = optional_cv2()
    if cv2 is not None:
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        pad = (y0, side - h - y0, x0, side - w - x0)
        square = cv2.copyMakeBorder(image[..., :3], *pad, cv2.BORDER_CONSTANT, value=0)
        flag = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
        return cv2.resize(square, (size, size), interpolation=flag)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    square = np.zeros((side, side, 3), dtype=np.uint8)
    square[y0 : y0 + h, x0 : x0 + w] = image[..., :3]
    return resize_image(square, size)


def letterbox(image: np.ndarray, size: int = SHORT_RANGE.size) -> tuple[np.ndarray, int, int, int]:
    """The image padded to a square and resized to size² RGB in [-1, 1]; (input, x0, y0,
    side)."""
    h, w = image.shape[:2]
    side = max(h, w)
    y0, x0 = (side - h) // 2, (side - w) // 2
    small = _square(image, x0, y0, side, size)
    tensor = np.empty((1, size, size, 3), np.float32)
    np.multiply(small, np.float32(1 / 127.5), out=tensor[0], casting="unsafe")
    tensor -= 1.0
    return tensor, x0, y0, side


def decode(
    regressors: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    model: BlazeFaceModel = SHORT_RANGE,
) -> np.ndarray:
    """Boxes (N, 9) = x0, y0, x1, y1 in [0, 1] of the model input, score, and the eyes (right
    eye x, y, left eye x, y: the first two of the six keypoints, the person's right eye on the
    image's left); after NMS."""
    probs = 1.0 / (1.0 + np.exp(-np.clip(scores.reshape(-1), -80.0, 80.0)))
    keep = probs >= threshold
    if not keep.any():
        return np.zeros((0, 9), np.float32)
    reg, probs, centre = regressors.reshape(-1, 16)[keep], probs[keep], anchors(model)[keep]
    reg = reg / model.size
    cx, cy = reg[:, 0] + centre[:, 0], reg[:, 1] + centre[:, 1]
    half_w, half_h = reg[:, 2] / 2, reg[:, 3] / 2
    eyes = reg[:, 4:8] + np.tile(centre, 2)
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h, probs], axis=1)
    return non_max_suppression(np.concatenate([boxes, eyes], axis=1), IOU_THRESHOLD)


def non_max_suppression(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS on (N, 5 or more) rows x0, y0, x1, y1, score, …: best first, overlaps
    dropped."""
    order = np.argsort(-boxes[:, 4])
    kept = []
    while len(order):
        best, rest = order[0], order[1:]
        kept.append(best)
        a, b = boxes[best], boxes[rest]
        iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
        ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
        order = rest[inter / np.maximum(union, 1e-9) <= iou_threshold]
    return boxes[kept]


# The models each `detector.reach` runs, in turn until one finds a face within its reach.
REACHES = {"short": (SHORT_RANGE,), "full": (FULL_RANGE,), "auto": (SHORT_RANGE, FULL_RANGE)}


class BlazeModelRunner:
    """One BlazeFace model on a LiteRT interpreter: an image in, its decoded boxes out."""

    def __init__(self, model: BlazeFaceModel, threads: int) -> None:
        self.model = model
        if not model.file.is_file():
            raise ModelError(f"face detector model missing: {model.file}")
        try:
            self.interpreter: Any = new_interpreter(model.file, threads)
        except DeviceError as error:
            raise DeviceError(
                f'the blazeface detector needs LiteRT: {error}, or set detector.kind = "haar"'
            ) from None
        self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        # the box and keypoint regressors (16 values per anchor), then the scores (1 per anchor)
        outputs = sorted(self.interpreter.get_output_details(), key=lambda o: -o["shape"][-1])
        self.regressors, self.classificators = (o["index"] for o in outputs)

    def boxes(self, image: np.ndarray, threshold: float) -> tuple[np.ndarray, int, int, int]:
        """decode()'s rows for `image` and the letterbox (x0, y0, side) they are relative to."""
        tensor, x0, y0, side = letterbox(image, self.model.size)
        self.interpreter.set_tensor(self.input_index, tensor)
        self.interpreter.invoke()
        rows = decode(
            self.interpreter.get_tensor(self.regressors),
            self.interpreter.get_tensor(self.classificators),
            threshold,
            self.model,
        )
        return rows, x0, y0, side


class BlazeFaceDetector:
    """Faces through the bundled BlazeFace models on LiteRT, as `detector.reach` says."""

    def __init__(self, cfg: DetectorConfig, threads: int = 1) -> None:
        self.cfg = cfg
        self.runners = [BlazeModelRunner(model, threads) for model in REACHES[cfg.reach]]

    def detect(self, image: np.ndarray) -> list[Detection]:
        faces = self._faces(image)
        if not self.cfg.level:
            return [replace(face, roll=0.0) for face in faces]
        return [replace(face, roll=self._refined_roll(image, face)) for face in faces]

    def _faces(self, image: np.ndarray) -> list[Detection]:
        """The faces the models find in the whole image, each face's roll from its eyes there:
        the first model's, unless it finds none or its largest is beyond its reach (narrower
        than its `smallest`), then the next model's where that one finds any."""
        found: list[Detection] = []
        longer = max(image.shape[:2])
        for runner in self.runners:
            found = self._found_by(runner, image) or found
            if found and max(f.w for f in found) >= runner.model.smallest * longer:
                break
        return found

    def _found_by(self, runner: BlazeModelRunner, image: np.ndarray) -> list[Detection]:
        """One model's faces of at least min_size, in frame pixels and the short-range boxes'
        convention."""
        boxes, x0, y0, side = runner.boxes(image, self.cfg.score_threshold)
        min_side = self.cfg.min_size * min(image.shape[:2])
        faces = []
        model = runner.model
        for bx0, by0, bx1, by1, score, *eyes in boxes:
            w, h = (bx1 - bx0) * side * model.side, (by1 - by0) * side * model.side
            cx = (bx0 + bx1) / 2 * side - x0
            cy = (by0 + by1) / 2 * side - y0 + model.drop * h / model.side
            if min(w, h) >= min_side:
                box = (float(cx - w / 2), float(cy - h / 2), float(w), float(h))
                faces.append(Detection(*box, float(score), eye_roll(*eyes)))
        return faces

    def _refined_roll(self, image: np.ndarray, face: Detection) -> float:
        """The face's roll measured again on the region around it (REFINE times its box),
        where its eyes span more of the model's input: a face a fifth of the frame wide has its
        eyes about 8 px apart in the whole frame's 128 px (short-range), and one pixel there
        is 7°. The first pass's roll where the region would not show the face at least twice
        as large (a face that fills much of the frame) or the second pass finds no face."""
        height, width = image.shape[:2]
        cx, cy, half = face.x + face.w / 2, face.y + face.h / 2, REFINE * max(face.w, face.h) / 2
        if 2 * half > max(height, width) / 2:
            return face.roll
        x0, y0 = max(int(cx - half), 0), max(int(cy - half), 0)
        x1, y1 = min(math.ceil(cx + half), width), min(math.ceil(cy + half), height)
        found = self._faces(image[y0:y1, x0:x1])
        return max(found, key=lambda d: d.area).roll if found else face.roll


def eye_roll(right_x: float, right_y: float, left_x: float, left_y: float) -> float:
    """The angle of the line from the person's right eye (image left) to the left one, in
    degrees clockwise from level (image y grows downwards)."""
    return math.degrees(math.atan2(left_y - right_y, left_x - right_x))
