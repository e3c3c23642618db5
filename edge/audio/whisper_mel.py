"""Whisper's log-mel input (numpy only): what OpenAI Whisper's audio encoder reads.

80 Slaney-scale mel bands of 25 ms windows every 10 ms (a periodic Hann window, the signal
zero-padded by half a window at each end as librosa's `stft(center=True)` does; Whisper's own
code pads by reflection, which changes the first and last two frames only), log10 of the power
clipped 8 decades below the window's peak, then scaled as Whisper was trained. The voice
that runs Whisper's first blocks (distill.models.WhisperSteps) is trained on exactly this.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
MEL_BANDS = 80
MAX_FRAMES = 3000  # Whisper's 30 s window
_SLANEY_LINEAR_HZ = 200.0 / 3  # Hz per mel below 1 kHz
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_slaney(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, np.float64)
    linear = hz / _SLANEY_LINEAR_HZ
    logarithmic = (
        _SLANEY_BREAK_HZ / _SLANEY_LINEAR_HZ
        + np.log(np.maximum(hz, _SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    )
    return np.where(hz >= _SLANEY_BREAK_HZ, logarithmic, linear)


def _slaney_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    break_mel = _SLANEY_BREAK_HZ / _SLANEY_LINEAR_HZ
    logarithmic = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (mel - break_mel))
    return np.where(mel >= break_mel, logarithmic, mel * _SLANEY_LINEAR_HZ)


@lru_cache(maxsize=1)
def slaney_filterbank() -> np.ndarray:
    """(80, 201) triangular filters on the Slaney mel scale from 0 to 8 kHz, each scaled to
    unit area (librosa.filters.mel's defaults, as Whisper uses them)."""
    edges = _slaney_to_hz(np.linspace(0.0, _hz_to_slaney(SAMPLE_RATE / 2), MEL_BANDS + 2))
    bins = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    return np.hanning(N_FFT + 1)[:-1]  # periodic


def whisper_log_mel(wave: np.ndarray, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """(frames, 80) float32 log-mel of a 16 kHz mono wave: one frame per whole 10 ms of it,
    an even number, at least 2 (a shorter wave padded with silence) and at most `max_frames`."""
    wave = np.asarray(wave, np.float32)
    wave = np.pad(wave, (0, max(0, 3 * HOP - len(wave))))  # 30 ms: the shortest with two frames
    padded = np.pad(wave, N_FFT // 2)
    count = len(wave) // HOP  # librosa's 1 + len // hop frames, less the last (as Whisper)
    count = min(count - count % 2, max_frames)
    starts = np.arange(count) * HOP
    frames = padded[starts[:, None] + np.arange(N_FFT)] * _hann()
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    spectrum = np.log10(np.maximum(power @ slaney_filterbank().T.astype(np.float64), 1e-10))
    spectrum = (np.maximum(spectrum, spectrum.max() - 8.0) + 4.0) / 4.0
    return spectrum.astype(np.float32)
