"""The pretrained speech encoder's targets (distill.speech_encoder) on real RAVDESS speech."""

from __future__ import annotations

import numpy as np
import pytest

from distill.cache import read_audio
from distill.speech_encoder import ENCODER_DIM, encoder_states
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
    assert states.shape == (16, ENCODER_DIM)
    np.testing.assert_allclose(np.linalg.norm(states, axis=1), 1.0, rtol=1e-5)
    similarity = states @ states.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(1)
    assert all(sexes[i] == sexes[j] for i, j in enumerate(nearest))
    (cached,) = tmp_path.glob("speech-encoder-*.npy")
    np.save(cached, states + 1)  # a second call reads the cache instead of encoding again
    assert np.array_equal(encoder_states(waves, 16000, tmp_path), states + 1)


def test_the_encoder_refuses_another_sample_rate(tmp_path) -> None:
    with pytest.raises(UsageError, match="16000 Hz audio, not 8000 Hz"):
        encoder_states([np.zeros(8000, np.float32)], 8000, tmp_path)
