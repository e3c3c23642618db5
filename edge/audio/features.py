"""Model audio input for a sliding window without recomputing what the last window computed.

At 10 cycles/s consecutive 3 s windows share 97 % of their analysis frames. Windows end on
the hop grid of the ring's sample count (at most one hop, 10 ms, before the frame's time),
so every analysis frame has an absolute index. Per-frame voice activity and MFCCs are kept
for the frames of the current window: each cycle analyses only the frames that are new (or
whose samples had not all arrived), and MFCCs only while the window is voiced. Deltas and
the per-window normalisation are then done as `edge.audio.frontend.window_features` does,
which gives the same features (tested).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge.audio.frontend import (
    AudioConfig,
    analysis_window,
    dct_matrix,
    delta,
    frame_signal,
    mel_filterbank,
    mfcc,
    normalise_window,
    voiced_frames,
)
from edge.audio.ring import AudioRing
from edge.core.opencv import optional_cv2

# Frames analysed per call. numpy's OpenBLAS runs a matrix product of more than about 260k
# multiply-adds on all cores and its threads then spin for a while: a whole window at once
# (298 frames × 257 bins × 40 mels) costs another core's time; blocks stay on this thread
# (12 × 512 packed values × 40 mels through OpenCV's DFT is 246k).
BLOCK = 12


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


def packed_filterbank(cfg: AudioConfig) -> np.ndarray:
    """The mel filters (n_fft, n_mels) for the squares of a real DFT in OpenCV's packed row
    layout (Re0, Re1, Im1, …, Re(n/2-1), Im(n/2-1), Re(n/2) for an even n): both squares of
    a bin get its weights, so their product with it is the mel power spectrum."""
    if cfg.n_fft % 2:
        raise ValueError("the packed layout needs an even n_fft")
    weights = mel_filterbank(cfg).T  # (n_fft // 2 + 1, n_mels)
    bins = np.concatenate([[0], np.repeat(np.arange(1, cfg.n_fft // 2), 2), [cfg.n_fft // 2]])
    return np.ascontiguousarray(weights[bins])


class SlidingFeatures:
    """`window_features` of the window ending at a time, with per-frame analysis cached."""

    def __init__(self, cfg: AudioConfig) -> None:
        if cfg.window_samples % cfg.hop_length:
            raise ValueError("the window must be a whole number of hops")
        self.cfg = cfg
        self._voiced = FrameCache(np.zeros(0, bool))
        self._coefficients = FrameCache(np.zeros((0, cfg.n_mfcc), np.float32))
        self._cv2 = optional_cv2()  # the same MFCCs, deltas and normalisation in half the time
        self._window = analysis_window(cfg)
        self._packed_filterbank = packed_filterbank(cfg)
        self._dct_db = 10.0 * dct_matrix(cfg).T  # the dB scale folded into the DCT
        half = cfg.delta_width // 2
        taps = np.arange(-half, half + 1, dtype=np.float32)
        self._delta_taps = (taps / (2 * np.sum(taps[half + 1 :] ** 2)))[:, None]

    def _mfcc(self, wave: np.ndarray) -> np.ndarray:
        """`edge.audio.frontend.mfcc`, with OpenCV's real DFT when present: its packed spectrum,
        squared, goes through the mel filters in one product (`packed_filterbank`)."""
        if self._cv2 is None:
            return mfcc(wave, self.cfg)
        frames = frame_signal(wave, self.cfg)
        padded = np.zeros((len(frames), self.cfg.n_fft), np.float32)
        np.multiply(frames, self._window, out=padded[:, : self.cfg.win_length])
        packed = self._cv2.dft(padded, flags=self._cv2.DFT_ROWS)
        mel = np.square(packed, out=packed) @ self._packed_filterbank
        return np.log10(np.maximum(mel, 1e-10)) @ self._dct_db

    def _delta(self, features: np.ndarray) -> np.ndarray:
        """`edge.audio.frontend.delta` over the window (edges repeated), through OpenCV when
        present."""
        if self._cv2 is None:
            return delta(features, self.cfg.delta_width)
        replicate = self._cv2.BORDER_REPLICATE
        return self._cv2.filter2D(features, -1, self._delta_taps, borderType=replicate)

    def _normalise(self, feats: np.ndarray) -> np.ndarray:
        """`edge.audio.frontend.normalise_window`, through OpenCV's per-channel mean and deviation
        when present."""
        if self._cv2 is None:
            return normalise_window(feats)
        mean, std = self._cv2.meanStdDev(feats.reshape(len(feats), 1, -1))
        feats -= mean.astype(np.float32).reshape(1, -1)
        feats /= std.astype(np.float32).reshape(1, -1) + np.float32(1e-5)
        return feats

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

        voiced = self._voiced.take(
            first, last, complete, lambda lo, hi: voiced_frames(frames(lo, hi), cfg)
        )
        if np.count_nonzero(voiced) < cfg.vad_min_voiced_fraction * len(voiced):
            return None, False

        def mfccs(lo: int, hi: int) -> np.ndarray:  # in blocks: see BLOCK
            return np.concatenate([
                self._mfcc(frames(b, min(b + BLOCK, hi)))
                for b in range(lo, hi, BLOCK)
            ])  # fmt: skip

        coefficients = self._coefficients.take(first, last, complete, mfccs)
        d1 = self._delta(coefficients)
        feats = np.concatenate([coefficients, d1, self._delta(d1)], axis=1)
        return self._normalise(feats), True
