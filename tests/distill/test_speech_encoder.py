"""The pretrained speech encoder's targets (distill.speech_encoder) on real RAVDESS speech."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.cache import read_audio
from distill.speech_encoder import (
    ENCODERS,
    centre_by_speaker,
    clip_keys,
    encoder_states,
    standardise,
    standardise_by_corpus,
    store_states,
    stored_states,
)
from edge.core.errors import UsageError

ACTORS = {"Actor_01": "male", "Actor_03": "male", "Actor_02": "female", "Actor_04": "female"}


def test_the_encoder_states_tell_voices_apart_and_are_cached(shared_data, tmp_path) -> None:
    """Four clips (different emotions) of each of two men and two women: every clip's nearest
    other clip is of the same sex (an encoder with untrained weights gets about half right)."""
    waves, sexes = [], []
    for actor, sex in ACTORS.items():
        for path in sorted((shared_data / "ravdess" / actor).glob("*.flac"))[::12][:4]:
            waves.append(read_audio(path, 16000))
            sexes.append(sex)
    states = encoder_states(waves, 16000, tmp_path)
    assert states.shape == (16, ENCODERS["resemblyzer"].dim)
    np.testing.assert_allclose(np.linalg.norm(states, axis=1), 1.0, rtol=1e-5)
    similarity = states @ states.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(1)
    assert all(sexes[i] == sexes[j] for i, j in enumerate(nearest))
    # the states are stored by each clip's content: other values stored under the same keys
    # are what a second call returns (read, not encoded), and a new clip is encoded alone
    (store,) = tmp_path.glob("speech-encoder-states-*.npz")
    store.unlink()
    store_states(clip_keys(waves), states + 1, tmp_path)
    assert np.array_equal(encoder_states(waves, 16000, tmp_path), states + 1)
    louder = waves[0] * 2
    again = encoder_states([waves[1], louder], 16000, tmp_path)
    assert np.array_equal(again[0], states[1] + 1)
    assert len(stored_states(tmp_path)) == 17 and len(list(tmp_path.glob("*.npz"))) == 2
    np.testing.assert_allclose(again[1], states[0], atol=1e-5)  # volume is normalised first


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_encoding_leaves_the_global_random_state_as_it_was(shared_data, tmp_path, encoder) -> None:
    """A seeded run trains alike whether the states are computed or read from the cache."""
    wave = read_audio(next((shared_data / "ravdess" / "Actor_01").glob("*.flac")), 16000)
    torch.manual_seed(0)
    encoder_states([wave], 16000, tmp_path, encoder)  # computed
    computed_then = torch.rand(4)
    torch.manual_seed(0)
    encoder_states([wave], 16000, tmp_path, encoder)  # read
    assert torch.equal(torch.rand(4), computed_then)


def test_the_encoder_refuses_another_sample_rate(tmp_path) -> None:
    with pytest.raises(UsageError, match="16000 Hz audio, not 8000 Hz"):
        encoder_states([np.zeros(8000, np.float32)], 8000, tmp_path)


def test_centring_by_speaker_removes_each_speakers_mean_state() -> None:
    """Speakers are a corpus's persons: EmoDB's 03 and RAVDESS's 03 are two people."""
    rng = np.random.default_rng(0)
    states = rng.normal(size=(6, 4)).astype(np.float32)
    corpora = np.array(["emodb", "emodb", "ravdess", "ravdess", "ravdess", "urdu"])
    persons = np.array(["03", "03", "03", "03", "01", "SM5"])
    centred = centre_by_speaker(states, corpora, persons)
    for rows in ([0, 1], [2, 3]):
        np.testing.assert_allclose(centred[rows], states[rows] - states[rows].mean(0), atol=1e-6)
    np.testing.assert_allclose(centred[[4, 5]], 0.0, atol=1e-6)  # alone: nothing sets it apart


def test_standardising_by_corpus_gives_each_corpus_mean_0_and_deviation_1() -> None:
    rng = np.random.default_rng(0)
    corpora = np.array(["emodb"] * 5 + ["ravdess"] * 7)
    states = rng.normal(size=(12, 4)).astype(np.float32)
    states[corpora == "ravdess"] = states[corpora == "ravdess"] * 3 + 2  # another recording
    standardised = standardise_by_corpus(states, corpora)
    for corpus in ("emodb", "ravdess"):
        rows = standardised[corpora == corpus]
        np.testing.assert_allclose(rows.mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(rows.std(0), 1.0, atol=1e-4)
    # within a corpus the clips keep their order and distances, up to the per-value scale
    emodb = states[corpora == "emodb"]
    np.testing.assert_allclose(standardised[:5], (emodb - emodb.mean(0)) / emodb.std(0), atol=1e-4)


def test_standardising_over_all_clips_gives_mean_0_and_deviation_1() -> None:
    """A dimension that is large and nearly the same in every clip no longer rules the cosine."""
    rng = np.random.default_rng(1)
    states = rng.normal(size=(9, 3)).astype(np.float32)
    states[:, 0] = 20 + 0.1 * states[:, 0]  # a transformer's outlier dimension
    standardised = standardise(states)
    np.testing.assert_allclose(standardised.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(standardised.std(0), 1.0, atol=1e-3)
    assert np.abs(standardised[:, 0]).max() < 4


def test_the_cli_offers_every_encoder_there_is() -> None:
    from distill.config import AUDIO_ENCODERS

    assert tuple(ENCODERS) == AUDIO_ENCODERS


def test_an_unknown_encoder_is_a_usage_error_naming_the_choices(tmp_path) -> None:
    with pytest.raises(UsageError, match=r"'wav2vec'.*resemblyzer, whisper-base"):
        encoder_states([np.zeros(16000, np.float32)], 16000, tmp_path, "wav2vec")
