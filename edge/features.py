"""Model audio input for a sliding window without recomputing what the last window computed.

At 10 cycles/s consecutive 3 s windows share 97 % of their analysis frames. Windows end on
the hop grid of the ring's sample count (at most one hop, 10 ms, before the frame's time),
so every frame's MFCCs can be kept by its absolute index; only new frames are analysed.
Deltas and the per-window normalisation are then done as `edge.audio.window_features` does,
which gives the same features (tested).
"""

from __future__ import annotations

import numpy as np

from edge.audio import AudioConfig, delta, is_voiced, mfcc_deltas
from edge.sync import AudioRing


class SlidingFeatures:
    """`window_features` of the window ending at a time, with per-frame MFCCs cached."""

    def __init__(self, cfg: AudioConfig) -> None:
        if cfg.window_samples % cfg.hop_length:
            raise ValueError("the window must be a whole number of hops")
        self.cfg = cfg
        self._rows: dict[int, np.ndarray] = {}

    def window(self, ring: AudioRing, t_end: float) -> tuple[np.ndarray | None, bool]:
        """(features (frames, 39) or None when not voiced, voiced) for the window at `t_end`."""
        cfg, hop = self.cfg, self.cfg.hop_length
        end = ring.end_index(t_end)
        end -= end % hop
        start = end - cfg.window_samples
        arrived = ring.total
        wave = ring.read(start, cfg.window_samples)
        if not is_voiced(wave, cfg):
            return None, False
        first = start // hop
        frames = range(first, first + cfg.num_frames)
        missing = [g for g in frames if g not in self._rows]
        fresh: dict[int, np.ndarray] = {}
        if missing:
            lo, hi = (missing[0] - first) * hop, (missing[-1] - first) * hop + cfg.win_length
            rows = mfcc_deltas(wave[lo:hi], cfg)[:, : cfg.n_mfcc]
            fresh = dict(zip(range(missing[0], missing[-1] + 1), rows, strict=True))
            for g, row in fresh.items():  # keep only frames whose samples had all arrived
                if g * hop + cfg.win_length <= arrived:
                    self._rows[g] = row
        for g in [g for g in self._rows if g < first]:
            del self._rows[g]
        mfcc = np.stack([fresh[g] if g in fresh else self._rows[g] for g in frames])
        d1 = delta(mfcc, cfg.delta_width)
        feats = np.concatenate([mfcc, d1, delta(d1, cfg.delta_width)], axis=1)
        mean, std = feats.mean(axis=0, keepdims=True), feats.std(axis=0, keepdims=True)
        return ((feats - mean) / (std + 1e-5)).astype(np.float32), True
