"""Where OpenCV accelerates face preprocessing or the sliding audio features, its numpy
fallback gives the same input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest

from edge.audio import features
from edge.audio.frontend import AudioConfig
from edge.audio.ring import AudioRing
from edge.capture import AudioChunk
from edge.capture.microphone import read_audio_file
from edge.vision import blazeface, face
from tests.fixtures_daemon import SAMPLE

RNG = np.random.default_rng(7)
T = TypeVar("T")


def numpy_and_opencv(
    monkeypatch: pytest.MonkeyPatch, work: Callable[..., T], *args: Any
) -> tuple[T, T]:
    """`work(*args)` with OpenCV, then with the numpy fallback."""
    with_cv2 = work(*args)
    with monkeypatch.context() as patch:
        for module in (face, blazeface, features):
            patch.setattr(module, "optional_cv2", lambda: None)
        return with_cv2, work(*args)


@pytest.mark.parametrize(
    "shape", [(100, 100), (96, 96), (37, 53), (20, 20), (168, 224), (301, 301), (130, 150, 3)]
)
@pytest.mark.parametrize("size", [48, (64, 40)])
def test_resize_agrees(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...], size: int | tuple[int, int]
) -> None:
    """Area average where both sides shrink, bilinear otherwise, in both implementations."""
    image = RNG.integers(0, 256, shape, dtype=np.uint8)
    fast, slow = numpy_and_opencv(monkeypatch, face.resize_image, image, size)
    width, height = (size, size) if isinstance(size, int) else size
    assert fast.dtype == slow.dtype == np.float32
    assert fast.shape == slow.shape == (height, width, *shape[2:])
    np.testing.assert_allclose(fast, slow, atol=1e-3)


@pytest.mark.parametrize("channels", [3, 4])
def test_gray_agrees_within_one_level(monkeypatch: pytest.MonkeyPatch, channels: int) -> None:
    image = RNG.integers(0, 256, (60, 80, channels), dtype=np.uint8)[5:50, 10:70]  # a view
    fast, slow = numpy_and_opencv(monkeypatch, face.to_gray, image)
    assert fast.dtype == slow.dtype == np.uint8
    assert np.abs(fast.astype(int) - slow.astype(int)).max() <= 1


def test_face_crop_and_detector_input_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = RNG.integers(0, 256, (168, 224, 3), dtype=np.uint8)
    cfg = face.FaceConfig()
    fast, slow = numpy_and_opencv(monkeypatch, face.crop_face, frame, (70.3, 20.8, 80.1, 84.6), cfg)
    assert np.abs(fast - slow).max() * cfg.std * 255 <= 1.001  # at most one gray level
    fast, slow = numpy_and_opencv(monkeypatch, blazeface.letterbox, frame)
    assert fast[1:] == slow[1:]
    assert np.abs(fast[0] - slow[0]).max() <= 1.001 / 127.5  # uint8 rounding in OpenCV's resize


def test_sliding_audio_features_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """MFCCs through OpenCV's packed DFT, its deltas and its normalisation, cycle by cycle."""
    wave, rate = read_audio_file(SAMPLE / "sample.flac")
    ring = AudioRing(rate, 20.0)
    ring.write(AudioChunk(wave, len(wave) / rate, rate))

    def windows() -> np.ndarray:
        sliding = features.SlidingFeatures(AudioConfig())
        found = [sliding.window(ring, t)[0] for t in np.arange(3.0, 8.0, 0.1)]
        return np.stack([f for f in found if f is not None])

    fast, slow = numpy_and_opencv(monkeypatch, windows)
    assert len(fast) == len(slow) > 10
    np.testing.assert_allclose(fast, slow, atol=1e-4)
