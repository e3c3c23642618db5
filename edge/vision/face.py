"""Face preprocessing (numpy only): grayscale, square crop with margin, 48×48, normalisation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from edge.core.opencv import optional_cv2


@dataclass(frozen=True)
class FaceConfig:
    """Face input contract; written into each model's manifest. The crop around a detector's
    box is a square of the box's side × (1 + 2·margin), its centre `lift` box heights above the
    box's: FER2013's framing, as the bundled detector (BlazeFace) boxes FER2013's faces (the
    medians over the validation faces, MODEL_CARD.md, "Faces through the device's crop")."""

    size: int = 48
    mean: float = 0.5
    std: float = 0.25
    margin: float = 0.09
    lift: float = 0.09

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FaceConfig:
        """The contract as written into a manifest or checkpoint; one written before `lift`
        existed cropped around the box's centre (lift 0)."""
        return cls(**{"lift": 0.0, **data})


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 gray from gray, RGB or RGBA (ITU-R BT.601 luma, as FER2013 was made); through
    OpenCV when present (its fixed-point luma differs by at most 1 level)."""
    if image.ndim == 2:
        return image
    cv2 = optional_cv2()
    if cv2 is not None and image.shape[-1] in (3, 4):
        code = cv2.COLOR_RGB2GRAY if image.shape[-1] == 3 else cv2.COLOR_RGBA2GRAY
        return cv2.cvtColor(image, code)
    rgb = image[..., :3].astype(np.float32)
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(gray + 0.5, 0, 255).astype(np.uint8)


def square_box(
    box: tuple[float, float, float, float], cfg: FaceConfig, width: int, height: int
) -> tuple[int, int, int]:
    """Square (x0, y0, side) of the crop around an (x, y, w, h) box (FaceConfig's margin and
    lift), inside the image."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * cfg.margin)
    side = int(round(min(side, width, height)))
    cx, cy = x + w / 2.0, y + h / 2.0 - cfg.lift * h
    x0 = int(round(min(max(cx - side / 2.0, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2.0, 0), height - side)))
    return x0, y0, side


@lru_cache(maxsize=64)
def _axis_weights(n_in: int, n_out: int, area: bool) -> np.ndarray:
    """The (n_out, n_in) matrix that resamples one axis: the share of each source pixel inside
    each output pixel's span (area), or bilinear weights with pixel centres aligned."""
    rows = np.arange(n_out)
    if area:
        scale = n_in / n_out
        left, right, cols = rows[:, None] * scale, (rows[:, None] + 1) * scale, np.arange(n_in)
        overlap = np.minimum(right, cols + 1) - np.maximum(left, cols)
        return (np.clip(overlap, 0, None) / scale).astype(np.float32)
    weights = np.zeros((n_out, n_in), np.float32)
    pos = np.clip((rows + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    low = np.floor(pos).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    np.add.at(weights, (rows, low), 1 - (pos - low))
    np.add.at(weights, (rows, high), pos - low)
    return weights


def resize_image(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """`image` (H×W or H×W×C) resized to size×size, or to (width, height), as float32.

    Where it shrinks (both sides) each output pixel is the area average of the pixels it covers,
    as FER2013's faces were made: sampling a few pixels instead (bilinear) would alias a camera's
    fine detail and sensor noise into the small image. Where it grows, bilinear with pixel
    centres aligned. Through OpenCV when present (INTER_AREA / INTER_LINEAR, the same values
    within 1e-3)."""
    width, height = (size, size) if isinstance(size, int) else size
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image.astype(np.float32)
    area = width <= w and height <= h
    cv2 = optional_cv2()
    if cv2 is not None:
        flag = cv2.INTER_AREA if area else cv2.INTER_LINEAR
        return cv2.resize(image.astype(np.float32), (width, height), interpolation=flag)
    rows, cols = _axis_weights(h, height, area), _axis_weights(w, width, area)
    return np.einsum("ij,jk...,lk->il...", rows, image.astype(np.float32), cols, optimize=True)


def normalize_face(gray48: np.ndarray, cfg: FaceConfig) -> np.ndarray:
    """0..255 face (size, size), or a batch (B, size, size), as the model input with its
    channel axis: float32 (1, size, size) or (B, 1, size, size)."""
    x = np.asarray(gray48, dtype=np.float32) / 255.0
    return np.expand_dims((x - cfg.mean) / cfg.std, -3).astype(np.float32)


def crop_face(
    image: np.ndarray, box: tuple[float, float, float, float], cfg: FaceConfig, roll: float = 0.0
) -> np.ndarray:
    """Model input for the face in `box` (x, y, w, h) of a camera frame, turned upright by
    `roll` (crop_gray): float32 (1, size, size)."""
    return normalize_face(crop_gray(image, box, cfg, roll), cfg)


def crop_gray(
    image: np.ndarray, box: tuple[float, float, float, float], cfg: FaceConfig, roll: float = 0.0
) -> np.ndarray:
    """The face in `box` as gray 0..255 float (size, size), before normalisation; a face whose
    eye line is tilted `roll` degrees clockwise is turned level about the crop's centre (with
    OpenCV; without it the crop stays as boxed). Only the crop is converted to gray (the same
    pixels as converting the whole frame)."""
    x0, y0, side = square_box(box, cfg, image.shape[1], image.shape[0])
    cv2 = optional_cv2() if roll else None
    if cv2 is not None:
        return _levelled(cv2, image, (x0, y0, side), roll, cfg.size)
    return resize_image(to_gray(image[y0 : y0 + side, x0 : x0 + side]), cfg.size)


def _levelled(
    cv2: Any, image: np.ndarray, square: tuple[int, int, int], roll: float, size: int
) -> np.ndarray:
    """The square (x0, y0, side) turned `roll` degrees counter-clockwise about its centre, as
    gray size × size: the frame region it sweeps is shrunk by area average to twice the output
    scale, turned there (bilinear, edges replicated) and halved by area average, so the turn
    costs little and the frame's noise is still averaged."""
    x0, y0, side = square
    height, width = image.shape[:2]
    cx, cy = x0 + side / 2, y0 + side / 2
    reach = side * (abs(math.cos(math.radians(roll))) + abs(math.sin(math.radians(roll)))) / 2
    rx0, ry0 = max(int(cx - reach), 0), max(int(cy - reach), 0)
    rx1, ry1 = min(math.ceil(cx + reach), width), min(math.ceil(cy + reach), height)
    scale = 2 * size / side
    out = (max(round((rx1 - rx0) * scale), 1), max(round((ry1 - ry0) * scale), 1))
    region = resize_image(to_gray(image[ry0:ry1, rx0:rx1]), out)
    # the square's centre in the region's pixel-centre coordinates, moved to the output's centre
    qx = (cx - rx0) * out[0] / (rx1 - rx0) - 0.5
    qy = (cy - ry0) * out[1] / (ry1 - ry0) - 0.5
    turn = cv2.getRotationMatrix2D((qx, qy), roll, 1.0)
    turn[:, 2] += (size - 0.5 - qx, size - 0.5 - qy)
    turned = cv2.warpAffine(
        region, turn, (2 * size, 2 * size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    return resize_image(turned, size)
