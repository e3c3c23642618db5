"""Shrinking a camera frame's face or the detector's input averages the pixels it covers, so a
camera's sensor noise and fine detail do not alias into the small image; growing is bilinear."""

from __future__ import annotations

import numpy as np
import pytest

from edge.vision import blazeface
from edge.vision.face import FaceConfig, crop_gray, resize_image

SIGMA = 8.0  # gray levels of noise in a 6× larger frame


def noisy_gray(side: int, seed: int = 0) -> np.ndarray:
    """A flat mid-gray frame with Gaussian sensor noise of SIGMA levels, as uint8."""
    noise = np.random.default_rng(seed).normal(0.0, SIGMA, (side, side))
    return np.clip(np.rint(128.0 + noise), 0, 255).astype(np.uint8)


def test_a_6x_shrink_averages_the_noise_of_36_pixels() -> None:
    """Sampling 2×2 pixels (bilinear) would leave SIGMA / 2; averaging 6×6 leaves SIGMA / 6."""
    small = crop_gray(noisy_gray(288), (0.0, 0.0, 288.0, 288.0), FaceConfig(margin=0.0, lift=0.0))
    assert small.shape == (48, 48)
    assert small.std() < SIGMA / 4
    assert abs(small.mean() - 128.0) < 0.5


def test_the_detector_input_averages_the_noise_too() -> None:
    frame = np.repeat(noisy_gray(768)[..., None], 3, axis=2)
    tensor = blazeface.letterbox(frame)[0]
    assert tensor.shape == (1, 128, 128, 3)
    assert (tensor * 127.5).std() < SIGMA / 4  # 6× shrink: SIGMA / 6, plus uint8 rounding


def test_growing_is_bilinear_with_centres_aligned() -> None:
    ramp = np.tile(np.arange(24, dtype=np.float32) * 10.0, (24, 1))
    big = resize_image(ramp, 48)
    # output pixel x sits at source (x + 0.5) / 2 - 0.5: inside the ramp its value is linear in x
    x = np.arange(4, 44)
    np.testing.assert_allclose(big[10, x], ((x + 0.5) / 2 - 0.5) * 10.0, atol=1e-3)


@pytest.mark.parametrize("size", [48, (40, 30)])
def test_an_exact_multiple_is_the_block_mean(size: int | tuple[int, int]) -> None:
    width, height = (size, size) if isinstance(size, int) else size
    image = np.random.default_rng(1).integers(0, 256, (height * 3, width * 3)).astype(np.float32)
    blocks = image.reshape(height, 3, width, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(resize_image(image, size), blocks, atol=1e-3)
