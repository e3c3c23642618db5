"""Audio–video alignment: each inference reads the audio window that ends at its frame's time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge.audio.ring import AudioRing
from edge.capture import AudioChunk, ReplayClock
from edge.capture.microphone import FileMicrophone
from edge.core.config import MicConfig

RATE = 16000


def feed(ring: AudioRing, wave: np.ndarray, t0: float, chunk: int = 1024) -> None:
    """Write `wave` in chunks, its first sample at time t0."""
    for start in range(0, len(wave), chunk):
        piece = wave[start : start + chunk]
        ring.write(AudioChunk(piece, t0 + (start + len(piece)) / RATE, RATE))


def test_window_ends_at_the_requested_time() -> None:
    ring = AudioRing(RATE, capacity_s=5.0)
    wave = np.arange(3 * RATE, dtype=np.float32)  # sample n has value n
    feed(ring, wave, t0=100.0)
    window = ring.window(t_end=101.5, duration_s=0.5)
    np.testing.assert_array_equal(window, wave[int(1.0 * RATE) : int(1.5 * RATE)])


def test_missing_and_future_samples_read_as_silence() -> None:
    ring = AudioRing(RATE, capacity_s=1.0)
    wave = np.arange(1, 3 * RATE + 1, dtype=np.float32)
    feed(ring, wave, t0=0.0)  # 3 s into a 1 s ring: only the last second is kept
    window = ring.window(t_end=3.5, duration_s=2.0)  # 1.5 .. 3.5 s
    np.testing.assert_array_equal(window[: RATE // 2], 0.0)  # older than the ring holds
    np.testing.assert_array_equal(window[RATE // 2 : int(1.5 * RATE)], wave[2 * RATE :])
    np.testing.assert_array_equal(window[int(1.5 * RATE) :], 0.0)  # not yet recorded
    assert not ring.wait_until(3.5, timeout=0.01)
    assert ring.wait_until(2.9, timeout=0.01)


def test_reads_across_the_ring_boundary_match_the_stream() -> None:
    ring = AudioRing(RATE, capacity_s=1000 / RATE)  # 1,000 samples
    wave = np.arange(1, 3701, dtype=np.float32)  # sample n has value n + 1
    feed(ring, wave, t0=0.0, chunk=333)  # wraps 3 times, chunk edges off the ring's
    rng = np.random.default_rng(0)
    for start, n in [(2700, 1000), (2950, 500), (2999, 2), (3650, 100), (2600, 300)]:
        expected = np.zeros(n, np.float32)
        for i in range(n):
            if 2700 <= start + i < 3700:
                expected[i] = wave[start + i]
        np.testing.assert_array_equal(ring.read(start, n), expected, err_msg=f"{start}+{n}")
    for start in rng.integers(2500, 3800, 50):
        got = ring.read(int(start), 250)
        idx = np.arange(start, start + 250)
        np.testing.assert_array_equal(got, np.where((idx >= 2700) & (idx < 3700), idx + 1, 0))


def test_empty_ring_is_silent() -> None:
    window = AudioRing(RATE, 4.0).window(10.0, 3.0)
    assert window.shape == (3 * RATE,) and not window.any()


@pytest.mark.parametrize("offset_s", [0.0, 0.5, -0.25])
def test_file_replay_with_known_offset_puts_a_click_where_the_clock_says(
    tmp_path: Path, offset_s: float
) -> None:
    """A click at 1.0 s of the audio file; the audio starts `offset_s` after the video. The
    window of a frame at video time 2.0 s must hold the click at 1.0 + offset_s."""
    wave = np.zeros(3 * RATE, np.float32)
    click_at = int(1.0 * RATE)
    wave[click_at] = 0.9
    path = tmp_path / "click.wav"
    soundfile.write(path, wave, RATE, subtype="FLOAT")

    clock = ReplayClock(realtime=False)
    mic = FileMicrophone(MicConfig(source="file", path=str(path), offset_s=offset_s), clock)
    ring = AudioRing(mic.sample_rate, capacity_s=10.0)
    mic.start(ring.write)
    assert ring.wait_until(clock.at(offset_s + 3.0), timeout=10)
    mic.stop()

    frame_time = clock.at(2.0)  # what a FileCamera stamps on the frame at 2.0 s
    window = ring.window(frame_time, duration_s=3.0)  # video time -1.0 .. 2.0 s
    expected = int(round((1.0 + offset_s - (2.0 - 3.0)) * RATE))
    assert int(np.argmax(np.abs(window))) == expected
    assert window[expected] == pytest.approx(0.9)
