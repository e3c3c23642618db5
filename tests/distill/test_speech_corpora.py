"""Multi-corpus speech: EmoDB and URDU loaders and their speaker splits, user-split class
folders, balanced sampling, the corpus-restricted loss and wave-level augmentation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from distill.cache import decode_audio
from distill.corpora import load_corpus, load_speech
from distill.pairing import balanced_weights, corpus_support
from distill.pretrain import restricted_cross_entropy
from distill.speech_augment import (
    SpeechAugment,
    augment_clip,
    band_limit,
    coloured_noise,
    reverberate,
    speed_perturb,
    vtlp,
)
from edge.audio.frontend import AudioConfig
from edge.core.labels import LABELS
from tests.tiny_corpora import speech_clip, write_emodb, write_ravdess, write_urdu


def test_emodb_names_give_speaker_splits_and_boredom_is_skipped(tmp_path, caplog) -> None:
    samples = load_corpus(write_emodb(tmp_path / "emodb", speakers=("03", "11", "15")), "audio")
    assert {s.corpus for s in samples} == {"emodb"}
    assert {(s.person, s.split) for s in samples} == {
        ("03", "train"),
        ("11", "val"),
        ("15", "test"),
    }
    assert len(samples) == 3 * 6  # boredom is outside the 7 classes
    assert "boredom ×3" in caplog.text


def test_urdu_names_give_speaker_splits(tmp_path) -> None:
    samples = load_corpus(write_urdu(tmp_path / "urdu", speakers=("SM1", "SM2", "SM4")), "audio")
    assert {s.corpus for s in samples} == {"urdu"}
    assert {(s.person, s.split) for s in samples} == {
        ("SM1", "val"),
        ("SM2", "test"),
        ("SM4", "train"),
    }
    assert {LABELS[s.label] for s in samples} == {"angry", "happy", "neutral", "sad"}


def test_a_class_folder_with_split_folders_keeps_its_split(tmp_path) -> None:
    import soundfile

    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        for name in ("happy", "sad"):
            folder = tmp_path / "mine" / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                wave = speech_clip(LABELS.index(name), rng, 16000, 1.0)
                soundfile.write(folder / f"{i}.wav", wave, 16000)
    samples = load_corpus(tmp_path / "mine", "audio")
    assert Counter(s.split for s in samples) == {"train": 6, "val": 2, "test": 4}
    assert {s.corpus for s in samples} == {"mine"}
    plain = load_corpus(tmp_path / "mine" / "train", "audio")  # no split folders: evaluation
    assert {s.split for s in plain} == {"test"}


def test_several_corpora_load_together_with_their_names(tmp_path) -> None:
    samples = load_speech(
        [
            write_ravdess(tmp_path / "rav", actors=(1, 21), sr=16000),
            write_emodb(tmp_path / "emodb"),
            write_urdu(tmp_path / "urdu"),
        ]
    )
    decoded = decode_audio(samples, AudioConfig(), tmp_path / "cache")
    assert Counter(decoded.corpora.tolist()) == {"ravdess": 14, "emodb": 18, "urdu": 12}


def test_balanced_weights_equal_classes_within_a_corpus_and_favour_small_corpora(tmp_path):
    samples = load_speech([write_ravdess(tmp_path / "rav", actors=(1, 2, 3, 4), sr=16000)])
    samples += load_speech([write_urdu(tmp_path / "urdu", speakers=("SM4",))])
    audio = decode_audio(samples, AudioConfig(), tmp_path / "cache")
    w = balanced_weights(audio)
    assert np.isclose(w.sum(), 1.0)
    for corpus in ("ravdess", "urdu"):
        rows = audio.corpora == corpus
        per_class = [w[rows & (audio.labels == c)].sum() for c in np.unique(audio.labels[rows])]
        assert np.allclose(per_class, per_class[0])
    ravdess, urdu = (w[audio.corpora == c].sum() for c in ("ravdess", "urdu"))
    assert np.isclose(ravdess / urdu, np.sqrt(28 / 4))  # sqrt of the sizes, not the sizes
    support = corpus_support(audio)
    assert support[audio.corpora == "urdu"].sum(1).tolist() == [4] * 4
    assert support[audio.corpora == "ravdess"].all()


def test_restricted_cross_entropy_ignores_classes_a_corpus_lacks() -> None:
    logits = torch.randn(6, 7, requires_grad=True)
    labels = torch.tensor([0, 3, 4, 5, 0, 4])
    full = torch.ones(6, 7, dtype=torch.bool)
    plain = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(restricted_cross_entropy(logits, labels, full, 0.1), plain)
    support = torch.zeros(6, 7, dtype=torch.bool)
    support[:, [0, 3, 4, 5]] = True
    loss = restricted_cross_entropy(logits, labels, support, 0.1)
    loss.backward()
    assert torch.isfinite(loss)
    assert (logits.grad[:, [1, 2, 6]] == 0).all() and (logits.grad[:, [0, 3, 4, 5]] != 0).any()


def test_speed_perturbation_resamples_in_time() -> None:
    ramp = np.arange(16000, dtype=np.float32)
    for factor in (0.85, 1.15):
        out = speed_perturb(ramp, factor)
        step = np.diff(out)
        assert np.allclose(step, factor, atol=1e-2)  # a ramp stays a ramp: resampled, not cut
        assert out.dtype == np.float32 and abs(len(out) * factor - 16000) < 2


def test_vtlp_moves_formants_but_keeps_length_and_identity() -> None:
    sr = 16000
    t = np.arange(sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    assert np.allclose(vtlp(tone, 1.0), tone, atol=1e-5)
    for alpha in (0.9, 1.1):
        warped = vtlp(tone, alpha)
        assert len(warped) == len(tone)
        spectrum = np.abs(np.fft.rfft(warped[2000:-2000]))
        peak = np.argmax(spectrum) * sr / len(warped[2000:-2000])
        assert abs(peak - 1000 * alpha) < 40


def test_reverb_band_limit_and_noise_do_what_they_say() -> None:
    rng = np.random.default_rng(0)
    sr = 16000
    wave = (0.1 * rng.standard_normal(sr * 2)).astype(np.float32)
    wet = reverberate(wave, rng, sr)
    assert len(wet) == len(wave) and np.isclose(np.mean(wet**2), np.mean(wave**2), rtol=1e-3)
    limited = band_limit(wave, np.random.default_rng(1), sr)
    freqs = np.fft.rfftfreq(len(wave), 1 / sr)
    spectrum = np.abs(np.fft.rfft(limited))
    assert spectrum[freqs > 7700].max() < 1e-3 * spectrum.max()
    noise = coloured_noise(sr, rng)
    assert np.isclose(np.mean(noise**2), 1.0, rtol=1e-3)


def test_augmented_windows_have_the_window_length_and_stay_finite() -> None:
    cfg = AudioConfig()
    rng = np.random.default_rng(2)
    clip = speech_clip(3, rng, seconds=2.0)
    for aug in (SpeechAugment(), SpeechAugment.basic(), SpeechAugment.none()):
        for _ in range(5):
            wave = augment_clip(clip, cfg, rng, aug)
            assert len(wave) == cfg.window_samples and np.isfinite(wave).all()
            assert np.abs(wave).max() <= 1.0
    unchanged = augment_clip(np.resize(clip, cfg.window_samples), cfg, rng, SpeechAugment.none())
    assert np.array_equal(unchanged, np.resize(clip, cfg.window_samples))


@pytest.mark.data
def test_real_emodb_and_urdu_splits_are_speaker_independent_and_hold_every_class(
    shared_data,
) -> None:
    for name, total, classes in (("emodb", 454, 6), ("urdu", 400, 4)):
        samples = load_corpus(shared_data / name, "audio")
        assert len(samples) == total and {s.corpus for s in samples} == {name}
        speakers = {split: {s.person for s in samples if s.split == split} for split in SPLITS}
        assert not speakers["train"] & speakers["val"]
        assert not speakers["train"] & speakers["test"]
        assert not speakers["val"] & speakers["test"]
        for split in SPLITS:
            assert len({s.label for s in samples if s.split == split}) == classes, (name, split)


SPLITS = ("train", "val", "test")


def test_an_augmentation_bank_serves_fixed_variants_of_the_drawn_clip(tmp_path) -> None:
    from distill.pairing import AudioTrainSet

    samples = load_speech([write_urdu(tmp_path / "urdu", speakers=("SM4",))])
    audio = decode_audio(samples, AudioConfig(), tmp_path / "cache")
    dataset = AudioTrainSet(audio, AudioConfig(), repeats=3, seed=0, bank=2)
    assert dataset.bank.shape == (4, 2, 298, 39) and len(dataset) == 12
    for i in range(len(dataset)):
        features, label, support, clip = dataset[i]
        assert label == audio.labels[clip]
        assert any(np.array_equal(features, v) for v in dataset.bank[clip].astype(np.float32))
        assert support.sum() == 4
    again = AudioTrainSet(audio, AudioConfig(), repeats=3, seed=0, bank=2)
    assert np.array_equal(again.bank, dataset.bank)  # seeded
    parallel = AudioTrainSet(audio, AudioConfig(), repeats=3, seed=0, bank=2, workers=2)
    state = torch.get_rng_state()
    assert np.array_equal(parallel.bank, dataset.bank)  # each clip seeded alone
    assert torch.equal(torch.get_rng_state(), state)  # the global generator left alone
