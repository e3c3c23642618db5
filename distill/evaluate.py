"""Scoring any predictor (a PyTorch model or an exported artifact) on the evaluation sets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from distill.models import EmotionModel
from distill.pairing import EvalSet
from edge.core.labels import NUM_CLASSES
from edge.vision.face import FaceConfig, normalize_face

Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def torch_predictor(model: EmotionModel) -> Predictor:
    """A numpy predictor (face, audio, mask) → probabilities for a PyTorch model (on whatever
    device it is)."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def predict(face: np.ndarray, audio: np.ndarray, mask: np.ndarray) -> np.ndarray:
        model.eval()
        inputs = (torch.from_numpy(x).to(device) for x in (face, audio, mask))
        return torch.softmax(model(*inputs), 1).cpu().numpy()

    return predict


def predict_set(
    predict: Predictor, es: EvalSet, face_cfg: FaceConfig, batch_size: int = 256
) -> np.ndarray:
    """Class scores (N, 7) of a predictor over an evaluation set."""
    out = []
    for i in range(0, len(es), batch_size):
        sl = slice(i, i + batch_size)
        out.append(
            predict(
                normalize_face(es.faces[sl], face_cfg),
                np.ascontiguousarray(es.audio[sl]),
                es.mask[sl],
            )
        )
    return np.concatenate(out)


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
    predict: Predictor, sets: Sequence[EvalSet], face_cfg: FaceConfig, batch_size: int = 256
) -> dict[str, dict]:
    """Scores of a predictor on every evaluation set, by set name."""
    metrics = {}
    for es in sets:
        probs = predict_set(predict, es, face_cfg, batch_size)
        metrics[es.name] = scores(probs.argmax(1), es.labels)
        metrics[es.name]["ece"] = round(expected_calibration_error(probs, es.labels), 2)
        if es.excluded:
            metrics[es.name]["excluded"] = dict(es.excluded)
    return metrics


def summary_line(metrics: dict[str, dict]) -> str:
    """'face_only 61.2 · audio_only 55.0 · fused 80.1 …' for logs."""
    return " · ".join(f"{name} {m['accuracy']:.1f}" for name, m in metrics.items())
