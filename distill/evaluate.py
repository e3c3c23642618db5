"""Scoring any predictor (a PyTorch model or an exported artifact) on the evaluation sets."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np
import torch

from distill.config import VOICE_STATISTICS
from distill.models import EmotionModel, MeanPool
from distill.pairing import EvalSet, Rows
from edge.backends.base import Runner
from edge.core.labels import NUM_CLASSES
from edge.core.voice_norm import VoiceNorm
from edge.vision.face import FaceConfig, normalize_face

Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class AdaptingPredictor(Protocol):
    """A predictor whose voice is standardised by the statistics of the speech it hears
    (edge.core.voice_norm): `voice_norm` holds them, `voice_states` gives the mean steps
    (N, D) they are gathered from."""

    voice_norm: VoiceNorm

    def __call__(self, face: np.ndarray, audio: np.ndarray, mask: np.ndarray) -> np.ndarray: ...

    def voice_states(self, audio: np.ndarray) -> np.ndarray: ...


class TorchPredictor:
    """A numpy predictor (face, audio, mask) → probabilities for a PyTorch model, on whatever
    device it is (or any `output` of the model's input tensors, and of the voice's
    standardisation where it adapts); for a model whose voice adapts to its deployment, also
    an AdaptingPredictor, starting from the model's prior. Predictors of one model may share
    `states`, the voice's mean steps by window (voice_states), which no output changes."""

    def __init__(
        self,
        model: EmotionModel,
        output: Callable[..., torch.Tensor] | None = None,
        states: dict[bytes, np.ndarray] | None = None,
    ):
        self.model = model
        self.output = output or (lambda *inputs: torch.softmax(model(*inputs), 1))
        # the model's own probabilities, and a voice that only pools its steps: the head reads
        # each window's mean steps, computed once however many rows share the window
        self._pooled = output is None and isinstance(model.attention, MeanPool)
        self.device = next(model.parameters()).device
        self._states = {} if states is None else states
        prior = model.voice_prior()
        if prior is not None:
            self.voice_norm = VoiceNorm(prior)

    def _tensors(self, *arrays: np.ndarray) -> list[torch.Tensor]:
        return [torch.from_numpy(x).to(self.device) for x in arrays]

    @torch.no_grad()
    def __call__(self, face: np.ndarray, audio: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.model.eval()
        norm = getattr(self, "voice_norm", None)
        extra = [] if norm is None else self._tensors(norm.norm)
        if not self._pooled:
            return self.output(*self._tensors(face, audio, mask), *extra).cpu().numpy()
        heard = np.where(mask[:, 1:, None] > 0, audio, np.float32(0))  # what the voice reads
        inputs = self._tensors(face, self.voice_states(heard), mask)
        return torch.softmax(self.model.from_mean_steps(*inputs, *extra), 1).cpu().numpy()

    @torch.no_grad()
    def voice_states(self, audio: np.ndarray) -> np.ndarray:
        """The voice's mean steps (N, D) of windows (N, T, F), each window's computed once
        (evaluation sets share their windows)."""
        keys = [window_key(w) for w in audio]
        first: dict[bytes, int] = {}  # each window not computed yet, at its first row
        for i, key in enumerate(keys):
            if key not in self._states:
                first.setdefault(key, i)
        new = list(first.values())
        if new:
            self.model.eval()
            (x,) = self._tensors(np.ascontiguousarray(audio[new]))
            states = self.model.audio(x).mean(1).cpu().numpy()
            self._states.update(zip((keys[i] for i in new), states, strict=True))
        return np.stack([self._states[k] for k in keys])


class RunnerPredictor:
    """An exported artifact's edge runner as a predictor: probabilities (or its fused logits,
    `logits`), and an AdaptingPredictor where its voice adapts.

    It runs one input a call, as the daemon does: a dynamic int8 graph (a Whisper voice's)
    quantises each call's activations with one scale for the whole call, so in a batch the
    inputs change each other's answers (the default's voice: 75.70 % one at a time, 75.23 % in
    batches of 64), and only one at a time gives the device's answers and the manifest's
    metrics."""

    def __init__(self, runner: Runner, logits: bool = False):
        self.runner = runner
        self.infer = runner.logits if logits else runner.predict
        if runner.voice_norm is not None:
            self.voice_norm = runner.voice_norm

    def __call__(self, face: np.ndarray, audio: np.ndarray, mask: np.ndarray) -> np.ndarray:
        rows = range(len(mask))
        return np.concatenate([self.infer(face[[i]], audio[[i]], mask[[i]]) for i in rows])

    def voice_states(self, audio: np.ndarray) -> np.ndarray:
        """The voice's mean steps (N, D) of windows (N, T, F), one window a call."""
        return np.concatenate([self.runner.voice_states(audio[[i]]) for i in range(len(audio))])


def window_key(window: np.ndarray) -> bytes:
    """A digest of one input window: what its computed states are found by."""
    return hashlib.sha1(np.ascontiguousarray(window).tobytes()).digest()


def torch_predictor(model: EmotionModel) -> TorchPredictor:
    """A numpy predictor (face, audio, mask) → probabilities for a PyTorch model."""
    return TorchPredictor(model)


def predict_set(
    predict: Predictor,
    es: EvalSet,
    face_cfg: FaceConfig,
    batch_size: int = 256,
    voice_statistics: str = "corpus",
) -> np.ndarray:
    """Class scores (N, 7) of a predictor over an evaluation set. An adapting predictor's
    voice is standardised by each corpus's (`es.corpora`) statistics, gathered from the mean
    steps of its distinct voiced windows as `voice_statistics` says (VOICE_STATISTICS)."""
    if voice_statistics not in VOICE_STATISTICS:
        raise ValueError(f"voice statistics {voice_statistics!r}: one of {VOICE_STATISTICS}")
    norm: VoiceNorm | None = getattr(predict, "voice_norm", None)
    if norm is None or es.corpora is None or voice_statistics == "prior":
        if norm is not None:
            norm.reset()
        return _predict_rows(predict, es, np.arange(len(es)), face_cfg, batch_size)
    parts: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, their scores)
    try:
        for corpus in np.unique(es.corpora):
            rows = np.flatnonzero(es.corpora == corpus)
            if voice_statistics == "online":
                parts += _heard_in_turn(predict, norm, es, rows, face_cfg, batch_size)
                continue
            heard = rows[es.mask[rows, 1] > 0]
            if len(heard):
                norm.fit(voice_states(predict, es, heard, batch_size))
            parts.append((rows, _predict_rows(predict, es, rows, face_cfg, batch_size)))
            norm.reset()
    finally:
        norm.reset()
    parts = [(rows, scored) for rows, scored in parts if len(rows)]
    out = np.concatenate([scored for _, scored in parts])
    out[np.concatenate([rows for rows, _ in parts])] = out.copy()
    return out


def _heard_in_turn(
    predict: AdaptingPredictor,
    norm: VoiceNorm,
    es: EvalSet,
    rows: np.ndarray,
    face_cfg: FaceConfig,
    batch_size: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`rows` (one corpus) and their scores, part by part, as the daemon hears them: from the
    prior, the distinct voiced windows one every `norm.every_s` seconds (VoiceNorm.observe),
    in an order fixed by their contents (the same in every set), each window's rows scored
    before it is taken."""
    norm.reset()
    voiced = es.mask[rows, 1] > 0
    silent = rows[~voiced]  # no voice: the statistics play no part
    yield silent, _predict_rows(predict, es, silent, face_cfg, batch_size)
    rows = rows[voiced]
    if not len(rows):  # a set whose voices are all masked
        return
    # pairs repeat their clips' windows: the distinct ones, in the order of their digests
    audio = es.audio
    ids = audio.index[rows] if isinstance(audio, Rows) else np.arange(len(rows))
    _, first, by_id = np.unique(ids, return_index=True, return_inverse=True)
    digests = np.array([window_key(audio[rows[i]]) for i in first], dtype=object)[by_id]
    distinct, which = np.unique(digests, return_inverse=True)
    # each distinct window's mean steps, in `first`'s order (no statistics change them)
    states = voice_states(predict, es, rows, batch_size)
    for turn in range(len(distinct)):
        chosen = which == turn
        yield rows[chosen], _predict_rows(predict, es, rows[chosen], face_cfg, batch_size)
        norm.observe(states[by_id[chosen][0]], turn * norm.every_s)
    norm.reset()


CORPUS_SET = re.compile(r"^(?P<whole>.+)\[(?P<corpus>[^\]]+)\]$")  # 'fused[emodb]'


def predict_sets(
    predict: Predictor,
    sets: Sequence[EvalSet],
    face_cfg: FaceConfig,
    batch_size: int = 256,
    voice_statistics: str = "corpus",
) -> dict[str, np.ndarray]:
    """Class scores of every set by name (predict_set). A corpus's set ('fused[emodb]') takes
    its rows of the set over every corpus ('fused') where that was scored before it: the same
    inputs, each corpus standardised by the same statistics, scored once."""
    out: dict[str, np.ndarray] = {}
    by_name = {es.name: es for es in sets}
    for es in sets:
        part = CORPUS_SET.match(es.name)
        whole = by_name.get(part["whole"]) if part else None
        if part and whole is not None and whole.name in out and whole.corpora is not None:
            rows = whole.corpora == part["corpus"]
            if rows.sum() == len(es) and np.array_equal(whole.labels[rows], es.labels):
                out[es.name] = out[whole.name][rows]
                continue
        out[es.name] = predict_set(predict, es, face_cfg, batch_size, voice_statistics)
    return out


def voice_states(
    predict: AdaptingPredictor, es: EvalSet, rows: np.ndarray, batch_size: int
) -> np.ndarray:
    """The mean steps of the distinct audio windows among `rows` of `es` (pairs repeat their
    clips' windows)."""
    audio = es.audio
    windows = audio.base[np.unique(audio.index[rows])] if isinstance(audio, Rows) else audio[rows]
    return np.concatenate(
        [
            predict.voice_states(np.ascontiguousarray(windows[i : i + batch_size]))
            for i in range(0, len(windows), batch_size)
        ]
    )


def _predict_rows(
    predict: Predictor, es: EvalSet, rows: np.ndarray, face_cfg: FaceConfig, batch_size: int
) -> np.ndarray:
    out = [
        predict(
            normalize_face(es.faces[part], face_cfg),
            np.ascontiguousarray(es.audio[part]),
            es.mask[part],
        )
        for part in (rows[i : i + batch_size] for i in range(0, len(rows), batch_size))
    ]
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES), np.float32)


def scores(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and unweighted average recall (UAR), in percent."""
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    np.add.at(conf, (labels, pred), 1)
    tp = np.diag(conf).astype(float)
    present = conf.sum(1) > 0
    recall = tp / np.maximum(conf.sum(1), 1)
    precision = tp / np.maximum(conf.sum(0), 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return {
        "accuracy": round(100 * tp.sum() / max(len(labels), 1), 2),
        "macro_f1": round(100 * f1[present].mean(), 2),
        "uar": round(100 * recall[present].mean(), 2),
        "n": len(labels),
        "confusion": conf.tolist(),
    }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE in percent: the gap between confidence and accuracy, averaged over `bins` equal-width
    confidence bins weighted by how many predictions fall in each (Guo et al. 2017)."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = sum(
        abs(correct[which == b].mean() - confidence[which == b].mean()) * (which == b).sum()
        for b in range(bins)
        if (which == b).any()
    )
    return float(100 * gap / max(len(labels), 1))


def evaluate(
    predict: Predictor,
    sets: Sequence[EvalSet],
    face_cfg: FaceConfig,
    batch_size: int = 256,
    voice_statistics: str = "corpus",
) -> dict[str, dict]:
    """Scores of a predictor on every evaluation set, by set name (an adapting voice's
    statistics gathered as `voice_statistics` says: predict_set)."""
    metrics = {}
    scored = predict_sets(predict, sets, face_cfg, batch_size, voice_statistics)
    for es in sets:
        probs = scored[es.name]
        metrics[es.name] = scores(probs.argmax(1), es.labels)
        metrics[es.name]["ece"] = round(expected_calibration_error(probs, es.labels), 2)
        if es.excluded:
            metrics[es.name]["excluded"] = dict(es.excluded)
    return metrics


def summary_line(metrics: dict[str, dict]) -> str:
    """'face_only 61.2 · audio_only 55.0 · fused 80.1 …' for logs."""
    return " · ".join(f"{name} {m['accuracy']:.1f}" for name, m in metrics.items())
