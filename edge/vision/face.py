"""Face preprocessing (numpy only): grayscale, square crop with margin, 48×48, normalisation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

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


@lru_cache(maxsize=32)
def _bilinear_grid(h: int, w: int, size: int) -> tuple[np.ndarray, ...]:
    """Source rows/columns and weights of `resize_bilinear` from h×w to size×size."""
    ys = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    xs = np.clip((np.arange(size) + 0.5) * w / size - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0).astype(np.float32)[:, None], (xs - x0).astype(np.float32)[None, :]
    return y0, y1, x0, x1, wy, wx


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D image to size×size with bilinear interpolation (pixel centres aligned),
    as float32; through OpenCV when present (the same values within 1e-4)."""
    h, w = image.shape
    if (h, w) == (size, size):
        return image.astype(np.float32)
    cv2 = optional_cv2()
    if cv2 is not None:
        return cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    y0, y1, x0, x1, wy, wx = _bilinear_grid(h, w, size)
    img = image.astype(np.float32)
    above, below = img[y0], img[y1]
    top = above[:, x0] * (1 - wx) + above[:, x1] * wx
    bottom = below[:, x0] * (1 - wx) + below[:, x1] * wx
    return top * (1 - wy) + bottom * wy


def normalize_face(gray48: np.ndarray, cfg: FaceConfig) -> np.ndarray:
    """0..255 face (size, size), or a batch (B, size, size), as the model input with its
    channel axis: float32 (1, size, size) or (B, 1, size, size)."""
    x = np.asarray(gray48, dtype=np.float32) / 255.0
    return np.expand_dims((x - cfg.mean) / cfg.std, -3).astype(np.float32)


def crop_face(
    image: np.ndarray, box: tuple[float, float, float, float], cfg: FaceConfig
) -> np.ndarray:
    """Model input for the face in `box` (x, y, w, h) of a camera frame: float32 (1, size, size)."""
    return normalize_face(crop_gray(image, box, cfg), cfg)


def crop_gray(
    image: np.ndarray, box: tuple[float, float, float, float], cfg: FaceConfig
) -> np.ndarray:
    """The face in `box` as gray 0..255 float (size, size), before normalisation. Only the crop
    is converted to gray (the same pixels as converting the whole frame)."""
    x0, y0, side = square_box(box, cfg, image.shape[1], image.shape[0])
    return resize_bilinear(to_gray(image[y0 : y0 + side, x0 : x0 + side]), cfg.size)
