"""Audio front end (numpy only): resampling, MFCC with deltas, energy voice activity.

Training imports these functions, so the device computes exactly what the model was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from edge.audio.whisper_mel import HOP, MEL_BANDS, N_FFT, whisper_log_mel

# What a model reads of a window: 13 MFCCs with deltas, normalised per window, or Whisper's
# log-mel (edge.audio.whisper_mel) for a voice that runs Whisper's first blocks.
FEATURES = ("mfcc", "whisper-log-mel")


@dataclass(frozen=True)
class AudioConfig:
    """Every parameter of the audio front end; written into each model's manifest."""

    sample_rate: int = 16000
    window_s: float = 3.0
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_mels: int = 40
    n_mfcc: int = 13
    fmin: float = 0.0
    fmax: float = 8000.0
    delta_width: int = 5
    vad_threshold_dbfs: float = -55.0
    vad_min_voiced_fraction: float = 0.10
    features: str = "mfcc"  # FEATURES

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ValueError(f"audio features {self.features!r}: {', '.join(FEATURES)} expected")
        whisper = (self.sample_rate, self.n_fft, self.win_length, self.hop_length, self.n_mels)
        if self.features == "whisper-log-mel" and whisper != (16000, N_FFT, N_FFT, HOP, MEL_BANDS):
            raise ValueError(
                f"whisper-log-mel features are 16 kHz, n_fft = win_length = {N_FFT}, "
                f"hop_length = {HOP}, n_mels = {MEL_BANDS}"
            )

    @classmethod
    def whisper(cls) -> AudioConfig:
        """The front end of a voice that reads Whisper's log-mel (3 s windows)."""
        return cls(
            n_fft=N_FFT, win_length=N_FFT, hop_length=HOP, n_mels=MEL_BANDS,
            features="whisper-log-mel",
        )  # fmt: skip

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def num_frames(self) -> int:
        if self.features == "whisper-log-mel":
            return self.window_samples // self.hop_length // 2 * 2
        return 1 + (self.window_samples - self.win_length) // self.hop_length

    @property
    def feature_dim(self) -> int:
        return self.n_mels if self.features == "whisper-log-mel" else 3 * self.n_mfcc

    def to_dict(self) -> dict:
        return asdict(self)


def to_mono_float(wave: np.ndarray) -> np.ndarray:
    """Int PCM or float audio, mono or (samples, channels), as float32 mono in [-1, 1]."""
    wave = np.asarray(wave)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if np.issubdtype(wave.dtype, np.integer):
        wave = wave.astype(np.float32) / float(np.iinfo(wave.dtype).max + 1)
    return wave.astype(np.float32, copy=False)


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling of a mono signal through the FFT (whole-signal, exact length)."""
    if sr_in == sr_out:
        return wave.astype(np.float32, copy=False)
    n_out = int(round(len(wave) * sr_out / sr_in))
    spectrum = np.fft.rfft(wave)
    keep = min(len(spectrum), n_out // 2 + 1)
    out_spec = np.zeros(n_out // 2 + 1, dtype=spectrum.dtype)
    out_spec[:keep] = spectrum[:keep]
    return (np.fft.irfft(out_spec, n_out) * (n_out / len(wave))).astype(np.float32)


def frame_signal(wave: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Frames of win_length samples every hop_length samples, no padding: (frames, win)."""
    if len(wave) < cfg.win_length:
        wave = np.pad(wave, (0, cfg.win_length - len(wave)))
    n = 1 + (len(wave) - cfg.win_length) // cfg.hop_length
    wave = np.ascontiguousarray(wave)
    step = wave.itemsize  # a read-only strided view over the samples (as_strided costs 3× more)
    frames = np.ndarray(
        (n, cfg.win_length), wave.dtype, buffer=wave, strides=(step * cfg.hop_length, step)
    )
    frames.flags.writeable = False
    return frames


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(cfg: AudioConfig) -> np.ndarray:
    """HTK-scale triangular filters, area-normalised: (n_mels, n_fft // 2 + 1)."""
    fft_freqs = np.linspace(0.0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    mels = np.linspace(
        _hz_to_mel(np.array(cfg.fmin)), _hz_to_mel(np.array(cfg.fmax)), cfg.n_mels + 2
    )
    edges = _mel_to_hz(mels)
    lower = (fft_freqs[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    upper = (edges[2:, None] - fft_freqs[None, :]) / np.diff(edges)[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=8)
def analysis_window(cfg: AudioConfig) -> np.ndarray:
    """The periodic Hann window applied to each frame: (win_length,)."""
    return np.hanning(cfg.win_length + 1)[:-1].astype(np.float32)  # periodic Hann


@lru_cache(maxsize=8)
def dct_matrix(cfg: AudioConfig) -> np.ndarray:
    """Orthonormal DCT-II rows for the first n_mfcc coefficients: (n_mfcc, n_mels)."""
    n = np.arange(cfg.n_mels)
    k = np.arange(cfg.n_mfcc)[:, None]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * cfg.n_mels)) * np.sqrt(2.0 / cfg.n_mels)
    basis[0] /= np.sqrt(2.0)
    return basis.astype(np.float32)


def log_mel(wave: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Log mel power spectrogram in dB: (frames, n_mels)."""
    frames = frame_signal(wave, cfg) * analysis_window(cfg)
    power = np.abs(np.fft.rfft(frames, n=cfg.n_fft, axis=1)) ** 2
    mel = power @ mel_filterbank(cfg).T
    return (10.0 * np.log10(np.maximum(mel, 1e-10))).astype(np.float32)


def mfcc(wave: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """The first n_mfcc cepstral coefficients per frame: (frames, n_mfcc)."""
    return log_mel(wave, cfg) @ dct_matrix(cfg).T


def delta(features: np.ndarray, width: int) -> np.ndarray:
    """Regression deltas over time (axis 0), edges repeated: the HTK formula with N = width // 2."""
    half = width // 2
    padded = np.pad(features, ((half, half), (0, 0)), mode="edge")
    n = len(features)
    num = sum(
        k * (padded[half + k : half + k + n] - padded[half - k : half - k + n])
        for k in range(1, half + 1)
    )
    return (num / (2 * sum(k * k for k in range(1, half + 1)))).astype(np.float32)


def mfcc_deltas(wave: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """13 MFCCs, their deltas and delta-deltas per frame: (frames, 39), not normalised."""
    coefficients = mfcc(wave, cfg)
    d1 = delta(coefficients, cfg.delta_width)
    d2 = delta(d1, cfg.delta_width)
    return np.concatenate([coefficients, d1, d2], axis=1)


def voiced_frames(wave: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Per analysis frame, True when its RMS level is above the voice-activity threshold
    (`vad_threshold_dbfs`, dB relative to full scale); compared as mean power, no logarithm."""
    frames = frame_signal(wave, cfg).astype(np.float64)
    power = np.einsum("ij,ij->i", frames, frames) / cfg.win_length
    return power > 10.0 ** (cfg.vad_threshold_dbfs / 10.0)


def voiced_fraction(wave: np.ndarray, cfg: AudioConfig) -> float:
    """Share of frames louder than the voice-activity threshold."""
    return float(np.mean(voiced_frames(wave, cfg)))


def is_voiced(wave: np.ndarray, cfg: AudioConfig) -> bool:
    """True when the window holds enough speech energy to count as audio present."""
    return voiced_fraction(wave, cfg) >= cfg.vad_min_voiced_fraction


def fit_window(wave: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """The last window_samples of `wave`, zero-padded at the front when it is shorter."""
    n = cfg.window_samples
    if len(wave) >= n:
        return wave[-n:]
    return np.pad(wave, (n - len(wave), 0))


def window_features(wave: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Model input for one window, float32 (num_frames, feature_dim), the window padded or cut
    to window_s first: MFCC+Δ+ΔΔ with per-window mean/variance normalisation, or Whisper's
    log-mel (cfg.features)."""
    window = fit_window(to_mono_float(wave), cfg)
    if cfg.features == "whisper-log-mel":
        return whisper_log_mel(window, cfg.num_frames)
    return normalise_window(mfcc_deltas(window, cfg))


def normalise_window(feats: np.ndarray) -> np.ndarray:
    """Per-window mean/variance normalisation of (frames, dims) features, in place when they
    are float32 already: each dimension to mean 0 and standard deviation 1 (+1e-5)."""
    feats = np.asarray(feats, dtype=np.float32)
    feats -= feats.mean(axis=0, keepdims=True)
    feats /= np.sqrt(np.mean(feats * feats, axis=0, keepdims=True)) + 1e-5
    return feats
