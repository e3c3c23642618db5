"""OpenCV capture on a generated MJPG file: the file source (replay clock) and the opencv
source given a file; corrupt files and missing devices are clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture import ReplayClock
from edge.capture.camera import FileCamera, OpenCVCamera
from edge.core.config import CameraConfig
from edge.core.errors import DataError, DeviceError

FPS = 8.0
LEVELS = [40, 120, 200, 80, 160]  # mean brightness of each frame


@pytest.fixture
def mjpg(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    for level in LEVELS:
        frame = np.full((48, 64, 3), level, np.uint8)
        frame[:, :, 2] = 255 - level  # red differs from blue: checks BGR → RGB
        writer.write(frame)
    writer.release()
    return path


def test_file_camera_stamps_frames_on_the_replay_clock(mjpg: Path) -> None:
    clock = ReplayClock(realtime=False)
    camera = FileCamera(mjpg, clock)
    camera.open()
    frames = []
    while (frame := camera.read()) is not None:
        frames.append(frame)
    camera.close()
    assert [f.index for f in frames] == list(range(len(LEVELS)))
    assert [f.t - clock.origin for f in frames] == pytest.approx([i / FPS for i in range(5)])
    for frame, level in zip(frames, LEVELS, strict=True):
        assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
        assert abs(float(frame.image[..., 2].mean()) - level) < 6  # blue channel, now last
        assert abs(float(frame.image[..., 0].mean()) - (255 - level)) < 6


def test_file_camera_loops(mjpg: Path) -> None:
    clock = ReplayClock(realtime=False)
    camera = FileCamera(mjpg, clock, loop=True)
    camera.open()
    frames = [camera.read() for _ in range(12)]
    camera.close()
    assert all(f is not None for f in frames)
    times = [f.t for f in frames]
    assert times == sorted(times) and times[-1] - times[0] == pytest.approx(11 / FPS)
    assert abs(float(frames[5].image[..., 2].mean()) - LEVELS[0]) < 6


def test_opencv_source_reads_a_video_file_with_live_timestamps(mjpg: Path) -> None:
    camera = OpenCVCamera(CameraConfig(source="opencv", device=str(mjpg)))
    camera.open()
    first, second = camera.read(), camera.read()
    camera.close()
    assert first is not None and second is not None
    assert second.t >= first.t and (first.index, second.index) == (0, 1)


def test_corrupt_video_is_a_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.avi"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 50)
    with pytest.raises(DataError, match="cannot decode video file"):
        FileCamera(bad, ReplayClock()).open()
    with pytest.raises(DataError, match="not found"):
        FileCamera(tmp_path / "none.avi", ReplayClock()).open()


def test_missing_camera_device_is_a_device_error() -> None:
    with pytest.raises(DeviceError, match="cannot open camera 97"):
        OpenCVCamera(CameraConfig(source="opencv", device=97)).open()
