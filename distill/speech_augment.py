"""Wave-level speech augmentation for voices that hold up beyond the training corpora.

Each training window of a clip goes through, in order (each step with its own probability):
speed perturbation (tempo, pitch and formants together, Ko et al. 2015), vocal-tract-length
perturbation (formants alone: a warp of the STFT's frequency axis, Jaitly & Hinton 2013), a
random crop, synthetic room reverberation, band-limiting (telephone-like low-pass and
high-pass), coloured noise at 0–30 dB SNR and gain (with the clipping a loud capture gets).
The model's own front end (`edge.audio.frontend.window_features`, per-window mean/variance
normalised MFCCs) then computes the features, so training sees what the device computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.audio.frontend import AudioConfig, window_features


@dataclass(frozen=True)
class SpeechAugment:
    """Probabilities and ranges of each step; `none()` switches every step off."""

    speed: float = 0.8
    speed_spread: float = 0.15
    vtlp: float = 0.5
    vtlp_spread: float = 0.12
    reverb: float = 0.4
    band_limit: float = 0.4
    noise: float = 0.6
    snr_db: tuple[float, float] = (0.0, 30.0)
    gain_db: tuple[float, float] = (-12.0, 6.0)

    @classmethod
    def none(cls) -> SpeechAugment:
        """No augmentation but a random crop."""
        return cls(speed=0, vtlp=0, reverb=0, band_limit=0, noise=0, gain_db=(0.0, 0.0))

    @classmethod
    def basic(cls) -> SpeechAugment:
        """The earlier recipe: speed ±10 %, gain ±6 dB and white noise at 10–40 dB half the time
        (kept to measure what the rest adds)."""
        return cls(
            speed=1.0, speed_spread=0.1, vtlp=0, reverb=0, band_limit=0, noise=0.5,
            snr_db=(10.0, 40.0), gain_db=(-6.0, 6.0),
        )  # fmt: skip


PRESETS = {
    "full": SpeechAugment(),
    "basic": SpeechAugment.basic(),
    "none": SpeechAugment.none(),
}


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play the clip `factor` times as fast (tempo and pitch together), by linear interpolation."""
    positions = np.arange(0, len(wave) - 1, factor)
    return np.interp(positions, np.arange(len(wave)), wave).astype(np.float32)


def vtlp(wave: np.ndarray, alpha: float, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Vocal-tract-length perturbation: the magnitude spectrum of each STFT frame warped along
    frequency by `alpha` (bin k takes the magnitude at k / alpha; > 1 raises formants), the
    phase kept, resynthesised by weighted overlap-add. Length and tempo are unchanged."""
    if len(wave) < n_fft:
        return wave
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    n = 1 + (len(wave) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    spectrum = np.fft.rfft(wave[idx] * window, axis=1)
    bins = np.arange(spectrum.shape[1])
    source = np.clip(bins / alpha, 0, bins[-1])
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, bins[-1])
    frac = source - low
    magnitude = np.abs(spectrum)
    warped = magnitude[:, low] * (1 - frac) + magnitude[:, high] * frac
    frames = np.fft.irfft(warped * np.exp(1j * np.angle(spectrum)), n_fft, axis=1) * window
    out = np.zeros(len(wave), np.float64)
    norm = np.zeros(len(wave), np.float64)
    np.add.at(out, idx, frames)
    np.add.at(norm, idx, np.broadcast_to(window**2, frames.shape))
    covered = norm > 1e-3
    result = wave.astype(np.float64).copy()
    result[covered] = out[covered] / norm[covered]
    return result.astype(np.float32)


def random_window(wave: np.ndarray, cfg: AudioConfig, rng: np.random.Generator) -> np.ndarray:
    """A random window_s crop, zero-padded on a random side when the clip is short."""
    n = cfg.window_samples
    if len(wave) >= n:
        start = rng.integers(0, len(wave) - n + 1)
        return wave[start : start + n]
    front = rng.integers(0, n - len(wave) + 1)
    return np.pad(wave, (front, n - len(wave) - front))


def fft_convolve(wave: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """`wave` convolved with `kernel`, cut to the length of `wave`."""
    size = 1 << int(np.ceil(np.log2(len(wave) + len(kernel) - 1)))
    out = np.fft.irfft(np.fft.rfft(wave, size) * np.fft.rfft(kernel, size), size)
    return out[: len(wave)].astype(np.float32)


def reverberate(wave: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A synthetic room: exponentially decaying noise with a reverberation time (RT60) of
    0.15–0.8 s after the direct sound, at the clip's own level."""
    rt60 = rng.uniform(0.15, 0.8)
    t = np.arange(int(rt60 * sample_rate)) / sample_rate
    rir = rng.standard_normal(len(t)) * 10 ** (-3 * t / rt60) * rng.uniform(0.1, 0.5)
    rir[0] = 1.0
    wet = fft_convolve(wave, rir.astype(np.float32))
    return wet * np.sqrt(np.mean(wave**2) / (np.mean(wet**2) + 1e-12))


def band_limit(wave: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A random low-pass (2.5–7 kHz) and, half the time, high-pass (80–400 Hz), with 10 %
    linear transition bands, in the frequency domain."""
    spectrum = np.fft.rfft(wave)
    freqs = np.fft.rfftfreq(len(wave), 1 / sample_rate)
    cutoff = rng.uniform(2500, 7000)
    gain = np.clip((1.1 * cutoff - freqs) / (0.2 * cutoff), 0, 1)
    if rng.random() < 0.5:
        low = rng.uniform(80, 400)
        gain *= np.clip((freqs - 0.9 * low) / (0.2 * low), 0, 1)
    return np.fft.irfft(spectrum * gain, len(wave)).astype(np.float32)


def coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f) or brown (1/f²) noise of unit power."""
    exponent = rng.choice([0.0, 1.0, 2.0])
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.maximum(np.arange(len(spectrum)), 1) ** (exponent / 2)
    noise = np.fft.irfft(spectrum, n)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def augment_clip(
    clip: np.ndarray, cfg: AudioConfig, rng: np.random.Generator, aug: SpeechAugment
) -> np.ndarray:
    """One augmented training window (window_s of samples) of a clip."""
    sr = cfg.sample_rate
    wave = clip
    if rng.random() < aug.speed:
        wave = speed_perturb(wave, rng.uniform(1 - aug.speed_spread, 1 + aug.speed_spread))
    if rng.random() < aug.vtlp:
        wave = vtlp(wave, rng.uniform(1 - aug.vtlp_spread, 1 + aug.vtlp_spread))
    wave = random_window(wave, cfg, rng)
    if rng.random() < aug.reverb:
        wave = reverberate(wave, rng, sr)
    if rng.random() < aug.band_limit:
        wave = band_limit(wave, rng, sr)
    if rng.random() < aug.noise:
        power = np.mean(wave**2) + 1e-10
        snr = rng.uniform(*aug.snr_db)
        wave = wave + coloured_noise(len(wave), rng) * np.sqrt(power / 10 ** (snr / 10))
    wave = wave * 10 ** (rng.uniform(*aug.gain_db) / 20)
    return np.clip(wave, -1, 1).astype(np.float32)


def training_features(
    clip: np.ndarray,
    cfg: AudioConfig,
    rng: np.random.Generator,
    aug: SpeechAugment = PRESETS["full"],
) -> np.ndarray:
    """One augmented training window of a clip as the model's features (T, 39)."""
    return window_features(augment_clip(clip, cfg, rng, aug), cfg)
