"""A voice that adapts to where it is deployed (model config voice_norm "deployment"): in
training each corpus is standardised by its own statistics, and evaluation standardises each
corpus's inputs by the statistics of that corpus's windows, as a device that heard them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from distill.evaluate import TorchPredictor, predict_set, predict_sets, window_key
from distill.models import build_model
from distill.pairing import EvalSet, Rows
from distill.whisper_voice import pooled_validation, standardised
from edge.audio.frontend import AudioConfig, window_features
from edge.core.voice_norm import VoiceNorm
from edge.vision.face import FaceConfig
from tests.fixtures_export import TINY

WHISPER = {"fusion": "late", "voice": "whisper-base"}


def two_corpora() -> tuple[np.ndarray, SimpleNamespace]:
    """Window means (N, 3 windows, 512) of two corpora recorded far apart."""
    rng = np.random.default_rng(0)
    near = rng.normal(5.0, 2.0, (40, 3, 512))
    far = rng.normal(-5.0, 0.5, (60, 3, 512))
    corpora = np.array(["near"] * 40 + ["far"] * 60)
    return np.concatenate([near, far]).astype(np.float32), SimpleNamespace(corpora=corpora)


@pytest.mark.parametrize("voice_norm", ["fixed", "deployment"])
def test_training_standardises_each_corpus_by_its_own_statistics_when_the_voice_adapts(
    voice_norm: str,
) -> None:
    model = build_model("student", TINY["student"] | WHISPER | {"voice_norm": voice_norm})
    states, audio = two_corpora()
    out = standardised(states, audio, model)
    flat = states.reshape(-1, 512)
    # either way the pooling's buffers hold the statistics of all training windows: the
    # standardisation, or an adapting voice's prior
    np.testing.assert_allclose(model.attention.centre.numpy(), flat.mean(0), atol=1e-3)
    np.testing.assert_allclose(model.attention.spread.numpy(), flat.std(0) + 1e-3, rtol=1e-3)
    near, far = out[:40].reshape(-1, 512), out[40:].reshape(-1, 512)
    if voice_norm == "deployment":
        for corpus in (near, far):
            assert np.abs(corpus.mean(0)).max() < 1e-3
            np.testing.assert_allclose(corpus.std(0), 1.0, atol=1e-2)
    else:
        assert near.mean() > 0.5 > -0.5 > far.mean()  # one standardisation for both


def test_a_voice_norm_of_another_name_or_for_another_voice_is_refused() -> None:
    with pytest.raises(ValueError, match="allowed values are fixed, deployment"):
        build_model("student", TINY["student"] | WHISPER | {"voice_norm": "speaker"})
    with pytest.raises(ValueError, match='for voice "whisper-base"'):
        build_model("student", TINY["student"] | {"voice_norm": "deployment"})


class Listening:
    """An adapting predictor over 'windows' whose mean steps are their first feature: it
    answers with the statistics it was given, so the test sees what each row was fed."""

    def __init__(self) -> None:
        self.voice_norm = VoiceNorm(np.stack([np.zeros(1), np.ones(1)]), prior_weight=1e-9)
        self.states_asked = 0

    def voice_states(self, audio: np.ndarray) -> np.ndarray:
        self.states_asked += len(audio)
        return audio[:, 0, :1]

    def __call__(self, face: np.ndarray, audio: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.rows_scored = getattr(self, "rows_scored", 0) + len(face)
        out = np.zeros((len(face), 7), np.float32)
        out[:, 0] = self.voice_norm.norm[0, 0]
        out[:, 1] = audio[:, 0, 0]  # which clip
        return out


def test_evaluation_standardises_each_corpus_by_its_own_distinct_windows() -> None:
    clips = np.zeros((5, 2, 1), np.float32)
    clips[:, 0, 0] = [1.0, 3.0, 10.0, 20.0, 30.0]  # corpus b: clips 0, 1; corpus a: 2, 3, 4
    corpus_of_clip = np.array(["b", "b", "a", "a", "a"])
    pairs = np.repeat(np.arange(5), [4, 1, 2, 2, 2])  # pairs repeat clips unevenly
    n = len(pairs)
    mask = np.tile([1.0, 1.0], (n, 1)).astype(np.float32)
    es = EvalSet(
        "fused",
        np.zeros((n, 48, 48), np.uint8),
        Rows(clips, pairs),
        mask,
        np.zeros(n, np.int64),
        corpora=corpus_of_clip[pairs],
    )
    predict = Listening()
    fed = predict_set(predict, es, FaceConfig(), batch_size=3)[:, 0]
    expected = np.where(corpus_of_clip[pairs] == "b", 2.0, 20.0)  # each clip counted once
    np.testing.assert_allclose(fed, expected, rtol=1e-6)
    assert predict.states_asked == 5
    np.testing.assert_array_equal(predict.voice_norm.norm, predict.voice_norm.prior)

    # rows whose voice is masked do not count; a set without corpora keeps the prior
    es.mask[pairs == 0, 1] = 0.0
    fed = predict_set(predict, es, FaceConfig())[:, 0]
    np.testing.assert_allclose(fed[corpus_of_clip[pairs] == "b"], 3.0, rtol=1e-6)
    es.corpora = None
    assert not predict_set(predict, es, FaceConfig())[:, 0].any()


def test_online_statistics_score_each_window_with_those_heard_before_it() -> None:
    """--voice-statistics online: a corpus's windows are heard one after another, as the daemon
    takes them, each clip's rows scored with the statistics of the clips heard before it;
    prior: nothing heard."""
    clips = np.zeros((5, 2, 1), np.float32)
    clips[:, 0, 0] = [1.0, 3.0, 10.0, 20.0, 30.0]
    corpus_of_clip = np.array(["b", "b", "a", "a", "a"])
    pairs = np.repeat(np.arange(5), [4, 1, 2, 2, 2])
    mask = np.tile([1.0, 1.0], (len(pairs), 1)).astype(np.float32)
    mask[-1, 1] = 0.0  # one pair of clip 4 without its voice
    es = EvalSet("fused", np.zeros((len(pairs), 48, 48), np.uint8), Rows(clips, pairs), mask,
                 np.zeros(len(pairs), np.int64), corpora=corpus_of_clip[pairs])  # fmt: skip
    # the order: by the windows' digests, whatever the rows' order
    turn = np.argsort(np.argsort([window_key(c) for c in clips]))
    expected = np.zeros(len(clips))
    for clip in range(len(clips)):
        before = [c for c in range(len(clips)) if corpus_of_clip[c] == corpus_of_clip[clip]
                  and turn[c] < turn[clip]]  # fmt: skip
        expected[clip] = clips[before, 0, 0].mean() if before else 0.0  # the prior's centre
    predict = Listening()
    scored = predict_set(predict, es, FaceConfig(), batch_size=3, voice_statistics="online")
    voiced = mask[:, 1] > 0
    np.testing.assert_allclose(scored[voiced, 0], expected[pairs[voiced]], rtol=1e-6)
    np.testing.assert_array_equal(scored[:, 1], clips[pairs, 0, 0])  # each row its own clip
    assert scored[~voiced, 0] == 0.0  # a row without voice: no statistics of any use
    assert predict.states_asked == 5  # each window heard once
    np.testing.assert_array_equal(predict.voice_norm.norm, predict.voice_norm.prior)
    # another set of the same clips, its rows in another order, hears them in the same order
    backwards = EvalSet("audio_only", np.zeros((5, 48, 48), np.uint8), clips[::-1].copy(),
                        np.tile([0.0, 1.0], (5, 1)).astype(np.float32), np.zeros(5, np.int64),
                        corpora=corpus_of_clip[::-1])  # fmt: skip
    scored = predict_set(Listening(), backwards, FaceConfig(), voice_statistics="online")
    np.testing.assert_allclose(scored[:, 0], expected[::-1], rtol=1e-6)

    assert not predict_set(predict, es, FaceConfig(), voice_statistics="prior")[:, 0].any()
    with pytest.raises(ValueError, match="voice statistics 'room'"):
        predict_set(predict, es, FaceConfig(), voice_statistics="room")


def test_each_corpus_set_is_its_rows_of_the_set_over_every_corpus() -> None:
    """Evaluation and export score a pair once: 'fused[a]' is read from 'fused' (the same
    rows, standardised by the same corpus statistics), unless it is not those rows."""
    clips = np.zeros((5, 2, 1), np.float32)
    clips[:, 0, 0] = [1.0, 3.0, 10.0, 20.0, 30.0]
    corpus_of_clip = np.array(["b", "b", "a", "a", "a"])
    pairs = np.repeat(np.arange(5), [4, 1, 2, 2, 2])
    mask = np.tile([1.0, 1.0], (len(pairs), 1)).astype(np.float32)

    def pair_set(name: str, rows: np.ndarray, labels: np.ndarray | None = None) -> EvalSet:
        p = pairs[rows]
        return EvalSet(name, np.zeros((len(p), 48, 48), np.uint8), Rows(clips, p), mask[rows],
                       np.zeros(len(p), np.int64) if labels is None else labels,
                       corpora=corpus_of_clip[p])  # fmt: skip

    every = np.arange(len(pairs))
    in_a = every[corpus_of_clip[pairs] == "a"]
    in_b = every[corpus_of_clip[pairs] == "b"]
    sets = [pair_set("fused", every), pair_set("fused[a]", in_a), pair_set("fused[b]", in_b),
            pair_set("other[a]", in_a), pair_set("relabelled", every),
            pair_set("relabelled[b]", in_b, np.ones(len(in_b), np.int64))]  # fmt: skip
    counted = Listening()
    scored = predict_sets(counted, sets, FaceConfig())
    for es in sets:
        np.testing.assert_array_equal(scored[es.name], predict_set(Listening(), es, FaceConfig()))
    # scored: 'fused', 'other[a]' (no 'other'), 'relabelled' and 'relabelled[b]' (not its
    # rows of 'relabelled'); read from 'fused': 'fused[a]' and 'fused[b]'
    assert counted.rows_scored == len(pairs) + len(in_a) + len(pairs) + len(in_b)


@pytest.mark.parametrize("voice_norm", ["fixed", "deployment"])
def test_a_pooled_voice_runs_once_a_window_and_scores_as_the_whole_model(voice_norm: str) -> None:
    """TorchPredictor on a voice that only pools its steps (Whisper's blocks): the head reads
    each distinct window's mean steps, computed once however many rows share the window (the
    voice stage's validation computes them before training), and the probabilities are the
    whole model's, with any mask and the statistics of another room."""
    model = build_model("student", TINY["student"] | WHISPER | {"voice_norm": voice_norm}).eval()
    cfg = AudioConfig.whisper()
    rng = np.random.default_rng(1)
    waves = rng.normal(0, 0.1, (2, cfg.window_samples)).astype(np.float32)
    windows = np.stack([window_features(w * (i + 1), cfg) for i, w in enumerate(waves)])
    pool = model.attention
    pool.centre.copy_(torch.from_numpy(rng.normal(0, 0.1, 512).astype(np.float32)))
    pool.spread.copy_(torch.full((512,), 0.5))
    audio = windows[[0, 0, 1, 1, 0, 1]]
    face = rng.standard_normal((6, 1, 48, 48)).astype(np.float32)
    mask = np.array([[1, 1], [1, 0], [0, 1], [1, 1], [0, 1], [1, 0]], np.float32)
    predict = TorchPredictor(model)
    norm = []
    if voice_norm == "deployment":
        predict.voice_norm.norm = np.stack([pool.centre.numpy() + 0.3, pool.spread.numpy() * 2])
        norm = [torch.from_numpy(predict.voice_norm.norm)]
    batches: list[int] = []
    hook = model.audio.register_forward_hook(lambda _m, x, _o: batches.append(len(x[0])))
    got = predict(face, audio, mask)
    assert batches == [3]  # the two windows and the silence a masked voice reads, once each
    predict(face, audio[::-1].copy(), mask)
    assert batches == [3]  # … and never again
    hook.remove()
    with torch.no_grad():
        whole = model(*(torch.from_numpy(x) for x in (face, audio, mask)), *norm)
    np.testing.assert_allclose(got, torch.softmax(whole, 1).numpy(), atol=1e-5)
    # the voice stage's validation: the windows' steps computed before training, read each epoch
    es = EvalSet(
        "audio_only",
        np.zeros((2, 48, 48), np.uint8),
        windows,
        np.tile([0.0, 1.0], (2, 1)).astype(np.float32),
        np.zeros(2, np.int64),
        corpora=np.array(["a", "b"]),
    )
    computed_here = predict_set(TorchPredictor(model), es, FaceConfig())
    validation = pooled_validation(model.audio, windows)(model)
    batches.clear()
    model.audio.register_forward_hook(lambda _m, x, _o: batches.append(len(x[0])))
    np.testing.assert_allclose(predict_set(validation, es, FaceConfig()), computed_here, atol=1e-6)
    assert batches == []  # the states came with it
