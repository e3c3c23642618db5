"""Model audio input for a sliding window without recomputing what the last window computed.

At 10 cycles/s consecutive 3 s windows share 97 % of their analysis frames. Windows end on
the hop grid of the ring's sample count (at most one hop, 10 ms, before the frame's time),
so every analysis frame has an absolute index. Per-frame energies (for the voice activity
check) and MFCCs are kept for the frames of the current window: each cycle analyses only the
frames that are new (or whose samples had not all arrived), and MFCCs only while the window
is voiced. Deltas and the per-window normalisation are then done as
`edge.audio.window_features` does, which gives the same features (tested).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge.audio import AudioConfig, delta, frame_energy_dbfs, mfcc, normalise_window
from edge.opencv import optional_cv2
from edge.sync import AudioRing

# Frames analysed per call. numpy's OpenBLAS runs a matrix product of more than about 260k
# multiply-adds on all cores and its threads then spin for a while: a whole window at once
# (298 frames × 257 bins × 40 mels) costs another core's time; blocks stay on this thread.
BLOCK = 16


class FrameCache:
    """Per-frame values for a contiguous run of frames that starts at the window's first."""

    def __init__(self, empty: np.ndarray) -> None:
        self.first = 0
        self.rows = empty

    def take(
        self, first: int, last: int, complete: int, compute: Callable[[int, int], np.ndarray]
    ) -> np.ndarray:
        """Rows of frames [first, last): cached ones, the rest computed; frames below
        `complete` (all their samples had arrived) are kept for the next window."""
        cached = self.first + len(self.rows)
        if not self.first <= first <= cached:  # no overlap (a gap, or time went back)
            self.first, self.rows, cached = first, self.rows[:0], first
        rows = self.rows[first - self.first :]
        if cached < last:
            rows = np.concatenate([rows, compute(cached, last)])
        self.first, self.rows = first, rows[: max(complete - first, 0)]
        return rows


class SlidingFeatures:
    """`window_features` of the window ending at a time, with per-frame analysis cached."""

    def __init__(self, cfg: AudioConfig) -> None:
        if cfg.window_samples % cfg.hop_length:
            raise ValueError("the window must be a whole number of hops")
        self.cfg = cfg
        self._energy = FrameCache(np.zeros(0, np.float64))
        self._mfcc = FrameCache(np.zeros((0, cfg.n_mfcc), np.float32))
        self._cv2 = optional_cv2()  # its filter computes the same deltas in a third of the time
        half = cfg.delta_width // 2
        taps = np.arange(-half, half + 1, dtype=np.float32)
        self._delta_taps = (taps / (2 * np.sum(taps[half + 1 :] ** 2)))[:, None]

    def _delta(self, features: np.ndarray) -> np.ndarray:
        """`edge.audio.delta` over the window (edges repeated), through OpenCV when present."""
        if self._cv2 is None:
            return delta(features, self.cfg.delta_width)
        replicate = self._cv2.BORDER_REPLICATE
        return self._cv2.filter2D(features, -1, self._delta_taps, borderType=replicate)

    def window(self, ring: AudioRing, t_end: float) -> tuple[np.ndarray | None, bool]:
        """(features (frames, 39) or None when not voiced, voiced) for the window at `t_end`."""
        cfg, hop = self.cfg, self.cfg.hop_length
        end = ring.end_index(t_end)
        end -= end % hop
        first = (end - cfg.window_samples) // hop
        last = first + cfg.num_frames
        complete = (ring.total - cfg.win_length) // hop + 1  # frames whose samples all arrived

        def frames(lo: int, hi: int) -> np.ndarray:  # the samples of frames [lo, hi)
            return ring.read(lo * hop, (hi - lo - 1) * hop + cfg.win_length)

        energy = self._energy.take(
            first, last, complete, lambda lo, hi: frame_energy_dbfs(frames(lo, hi), cfg)
        )
        if float(np.mean(energy > cfg.vad_threshold_dbfs)) < cfg.vad_min_voiced_fraction:
            return None, False

        def mfccs(lo: int, hi: int) -> np.ndarray:  # in blocks: see BLOCK
            return np.concatenate([
                mfcc(frames(b, min(b + BLOCK, hi)), cfg)
                for b in range(lo, hi, BLOCK)
            ])  # fmt: skip

        coefficients = self._mfcc.take(first, last, complete, mfccs)
        d1 = self._delta(coefficients)
        feats = np.concatenate([coefficients, d1, self._delta(d1)], axis=1)
        return normalise_window(feats), True
