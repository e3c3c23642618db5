"""The sliding-window audio features equal `window_features` on the same (hop-aligned)
window, cycle after cycle, while audio keeps arriving in chunks."""

from __future__ import annotations

import numpy as np

from edge.audio.features import SlidingFeatures
from edge.audio.frontend import AudioConfig, is_voiced, window_features
from edge.audio.ring import AudioRing
from edge.capture import AudioChunk
from edge.capture.microphone import read_audio_file
from tests.fixtures_daemon import SAMPLE


def test_sliding_features_match_window_features() -> None:
    cfg = AudioConfig()
    wave, rate = read_audio_file(SAMPLE / "sample.flac")
    ring, sliding = AudioRing(rate, 8.0), SlidingFeatures(cfg)
    t0, written, voiced_windows = 50.0, 0, 0
    for k in range(1, 125):
        t = t0 + k * 0.1037  # cycles off the hop grid
        upto = min(int((t - t0) * rate) + 500, len(wave))  # audio slightly ahead of the frame
        while written < upto:
            piece = wave[written : min(written + 1024, upto)]
            written += len(piece)
            ring.write(AudioChunk(piece, t0 + written / rate, rate))
        features, voiced = sliding.window(ring, t)
        end = ring.end_index(t)
        end -= end % cfg.hop_length
        assert 0 <= ring.end_index(t) - end < cfg.hop_length  # at most one hop early
        reference = ring.read(end - cfg.window_samples, cfg.window_samples)
        assert voiced == is_voiced(reference, cfg)
        if voiced:
            voiced_windows += 1
            np.testing.assert_allclose(features, window_features(reference, cfg), atol=1e-4)
        else:
            assert features is None
    assert 30 < voiced_windows < 124  # the clip has speech and silence


def test_jumps_in_time_recompute_what_they_must() -> None:
    """Back in time, past the cached frames, and voiced again after silence: still equal."""
    cfg = AudioConfig()
    wave, rate = read_audio_file(SAMPLE / "sample.flac")
    ring, sliding = AudioRing(rate, 20.0), SlidingFeatures(cfg)
    ring.write(AudioChunk(wave, 100.0 + len(wave) / rate, rate))
    for t in (4.0, 4.1, 3.0, 3.2, 8.0, 12.9, 5.0, 5.1):
        features, voiced = sliding.window(ring, 100.0 + t)
        end = ring.end_index(100.0 + t)
        end -= end % cfg.hop_length
        reference = ring.read(end - cfg.window_samples, cfg.window_samples)
        assert voiced == is_voiced(reference, cfg), t
        if voiced:
            np.testing.assert_allclose(features, window_features(reference, cfg), atol=1e-4)
