"""The numpy audio front end against librosa (an independent implementation) and its contracts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.audio.frontend import (
    AudioConfig,
    is_voiced,
    log_mel,
    mfcc_deltas,
    resample,
    voiced_fraction,
    voiced_frames,
    window_features,
)
from edge.audio.whisper_mel import MAX_FRAMES, whisper_log_mel
from edge.capture.microphone import read_audio_file
from tests.fixtures_daemon import SAMPLE

librosa = pytest.importorskip("librosa")
CFG = AudioConfig()
# Tolerances: float32 spectra in dB, compared after the same HTK-mel / ortho-DCT choices.
MEL_DB_ATOL = 1e-2
MFCC_ATOL = 2e-2


def reference_log_mel(wave: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=wave.astype(np.float64),
        sr=CFG.sample_rate,
        n_fft=CFG.n_fft,
        hop_length=CFG.hop_length,
        win_length=CFG.win_length,
        window="hann",
        center=False,
        power=2.0,
        n_mels=CFG.n_mels,
        fmin=CFG.fmin,
        fmax=CFG.fmax,
        htk=True,
        norm="slaney",
    )
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T


def reference_mfcc_deltas(wave: np.ndarray) -> np.ndarray:
    mfcc = librosa.feature.mfcc(
        S=reference_log_mel(wave).T, n_mfcc=CFG.n_mfcc, dct_type=2, norm="ortho"
    )
    d1 = librosa.feature.delta(mfcc, width=CFG.delta_width, order=1, mode="nearest")
    d2 = librosa.feature.delta(d1, width=CFG.delta_width, order=1, mode="nearest")
    return np.concatenate([mfcc, d1, d2]).T


def check_against_reference(wave: np.ndarray) -> None:
    """librosa (center=False) frames are n_fft long with the window centred in them, so its
    frame t is our frame starting (n_fft - win_length) / 2 samples later; it may have one frame
    fewer. Deltas of the last frames differ by edge handling, so those are left out."""
    offset = (CFG.n_fft - CFG.win_length) // 2
    ref_mel, ref = reference_log_mel(wave), reference_mfcc_deltas(wave)
    ours_mel, ours = log_mel(wave[offset:], CFG), mfcc_deltas(wave[offset:], CFG)
    n = len(ref)
    assert len(ours) in (n, n + 1)
    np.testing.assert_allclose(ours_mel[:n], ref_mel, atol=MEL_DB_ATOL)
    edge = CFG.delta_width
    np.testing.assert_allclose(ours[: n - edge], ref[: n - edge], atol=MFCC_ATOL)


def test_mfcc_matches_librosa_on_a_synthetic_vowel() -> None:
    t = np.arange(CFG.window_samples) / CFG.sample_rate
    rng = np.random.default_rng(0)
    wave = sum(0.2 / k * np.sin(2 * np.pi * 140 * k * t) for k in range(1, 12))
    wave = (wave + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    check_against_reference(wave)


@pytest.mark.data
def test_mfcc_matches_librosa_on_real_speech(shared_data) -> None:
    import soundfile

    clips = sorted((shared_data / "ravdess").glob("Actor_0[1-3]/*.flac"))[::25]
    assert clips
    for clip in clips:
        wave, sr = soundfile.read(clip, dtype="float32")
        assert sr == CFG.sample_rate
        check_against_reference(wave)


def test_window_features_shape_and_normalisation() -> None:
    rng = np.random.default_rng(1)
    feats = window_features(rng.standard_normal(CFG.window_samples).astype(np.float32) * 0.1, CFG)
    assert feats.shape == (CFG.num_frames, 39) == (298, 39)
    assert feats.dtype == np.float32
    np.testing.assert_allclose(feats.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(feats.std(0), 1, atol=1e-2)


def test_short_window_is_padded_at_the_front() -> None:
    tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(8000) / CFG.sample_rate).astype(np.float32)
    assert window_features(tone, CFG).shape == (298, 39)


def test_int16_input_is_scaled() -> None:
    rng = np.random.default_rng(2)
    f = (0.2 * rng.standard_normal(CFG.window_samples)).astype(np.float32)
    np.testing.assert_allclose(
        window_features((f * 32768).astype(np.int16), CFG), window_features(f, CFG), atol=1e-2
    )


def test_voice_activity() -> None:
    rng = np.random.default_rng(3)
    silence = (1e-4 * rng.standard_normal(CFG.window_samples)).astype(np.float32)
    assert not is_voiced(silence, CFG)
    speechy = silence.copy()
    speechy[16000:24000] += 0.1 * np.sin(2 * np.pi * 200 * np.arange(8000) / 16000)
    assert is_voiced(speechy, CFG)
    assert 0.1 < voiced_fraction(speechy, CFG) < 0.25


def test_voiced_frames_are_those_above_the_threshold_in_dbfs() -> None:
    """The power comparison is the RMS level in dB relative to full scale, computed here
    frame by frame on the sample's speech."""
    wave, rate = read_audio_file(SAMPLE / "sample.flac")
    assert rate == CFG.sample_rate
    wave = wave[: 4 * rate]
    starts = range(0, len(wave) - CFG.win_length + 1, CFG.hop_length)
    rms = [math.sqrt(np.mean(wave[s : s + CFG.win_length].astype(np.float64) ** 2)) for s in starts]
    expected = np.array([20 * math.log10(max(r, 1e-10)) for r in rms]) > CFG.vad_threshold_dbfs
    found = voiced_frames(wave, CFG)
    assert 0 < expected.sum() < len(expected)
    np.testing.assert_array_equal(found, expected)


def test_resample_keeps_a_tone_and_the_duration() -> None:
    sr_in = 48000
    t = np.arange(sr_in) / sr_in
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    out = resample(tone, sr_in, 16000)
    assert len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) - 440) <= 1
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    np.testing.assert_allclose(out[100:-100], ref[100:-100], atol=1e-2)


@pytest.mark.parametrize("samples", [10, 480, 1000, 16000, 48123, 16000 * 31])
def test_whisper_log_mel_is_librosas_slaney_log_mel_scaled_as_whisper(samples: int) -> None:
    """Whisper's front end (edge.audio.whisper_mel) against librosa's STFT and Slaney mel
    filters: one frame per whole 10 ms (an even number, at least 2, at most 30 s), log10
    clipped 8 decades below the peak, (x + 4) / 4."""
    wave = (0.1 * np.random.default_rng(samples).standard_normal(samples)).astype(np.float32)
    padded = np.pad(wave, (0, max(0, 480 - samples)))
    power = np.abs(librosa.stft(padded, n_fft=400, hop_length=160, window="hann")) ** 2
    bands = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ power[:, :-1]
    spectrum = np.log10(np.clip(bands, 1e-10, None))
    expected = (np.maximum(spectrum, spectrum.max() - 8.0) + 4.0) / 4.0
    frames = min(expected.shape[1] // 2 * 2, MAX_FRAMES)
    ours = whisper_log_mel(wave)
    assert ours.shape == (frames, 80)
    np.testing.assert_allclose(ours, expected[:, :frames].T, atol=1e-5)


def test_a_whisper_front_end_gives_its_windows_log_mel_and_refuses_other_parameters() -> None:
    cfg = AudioConfig.whisper()
    wave = (0.1 * np.random.default_rng(1).standard_normal(40000)).astype(np.float32)
    features = window_features(wave, cfg)
    assert features.shape == (cfg.num_frames, cfg.feature_dim) == (300, 80)
    np.testing.assert_array_equal(features, whisper_log_mel(np.pad(wave, (8000, 0)), 300))
    with pytest.raises(ValueError, match="n_mels = 80"):
        AudioConfig(features="whisper-log-mel")  # the MFCC front end's 512-point FFT, 40 mels
    with pytest.raises(ValueError, match="mfcc, whisper-log-mel expected"):
        AudioConfig(features="spectrogram")
