"""How the daemon turns the model's three output rows into one prediction (`[fusion]` table).

Every artifact outputs, per input, the model's fused scores, the face's own and the voice's
own (edge.core.manifest.OUTPUT_ROWS); each branch is calibrated (distill.calibrate). The mode picks:

- auto:  the model's reliability-aware fusion (each branch weighted by how certain it is on
         this input; the default);
- fused: a plain product of the two calibrated predictions, the voice's log-probabilities
         scaled by `voice_weight` (0 ignores the voice, 1 trusts both alike);
- face / voice: that modality alone (the other is masked before inference); without it there
  is no prediction (state "absent").

With one modality missing, auto and fused both give the present one's own prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.core.labels import LABELS
from edge.core.settings import setting

MODES = ("auto", "fused", "face", "voice")
MAX_VOICE_WEIGHT = 4.0


@dataclass(frozen=True)
class FusionConfig:
    """[fusion]: mode (MODES) and the voice's weight in mode 'fused' (0..MAX_VOICE_WEIGHT);
    declared here for the configuration file, and checked by the set/fusion command's schema."""

    mode: str = setting(
        "auto",
        choices=MODES,
        help="How face and voice make one prediction. auto: the model's reliability-aware "
        "fusion (each modality weighted by how certain it is on this input); fused: the product "
        "of the two calibrated predictions with the voice weighted by voice_weight; face or "
        "voice: that modality alone. Changeable at run time: <prefix>/<device_id>/set/fusion "
        '{"mode": "face"}.',
    )
    voice_weight: float = setting(
        1.0,
        low=0.0,
        high=MAX_VOICE_WEIGHT,
        help='The voice\'s weight in mode "fused": 0 ignores the voice, 1 trusts both alike.',
    )


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Log-probabilities of a score vector (float64)."""
    z = np.asarray(scores, dtype=np.float64)
    z = z - z.max()
    return z - np.log(np.exp(z).sum())


def used_mask(mask: np.ndarray, cfg: FusionConfig) -> np.ndarray:
    """The modalities a mode uses of those present: [face present, voice present], with the
    other modality dropped in mode 'face' or 'voice'."""
    keep = {"face": (1.0, 0.0), "voice": (0.0, 1.0)}.get(cfg.mode, (1.0, 1.0))
    return (np.asarray(mask, np.float32) * np.array(keep, np.float32)).astype(np.float32)


def fuse(rows: np.ndarray, mask: np.ndarray, cfg: FusionConfig) -> np.ndarray | None:
    """Class probabilities (classes,) from the model's output rows (3, classes) for an input
    whose modalities `mask` (used_mask) were given to the model; None without either."""
    face, voice = bool(mask[0]), bool(mask[1])
    if not (face or voice):
        return None
    if cfg.mode == "fused" and face and voice:
        scores = log_softmax(rows[1]) + cfg.voice_weight * log_softmax(rows[2])
    else:  # the model's own answer: its fusion, or the one modality it was given
        scores = rows[0]
    return np.exp(log_softmax(scores))


def modality_predictions(rows: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray | None]:
    """Each modality's own probabilities (or None where it is missing): what drove a result."""
    return {
        name: np.exp(log_softmax(rows[row])) if mask[i] else None
        for i, (name, row) in enumerate((("face", 1), ("voice", 2)))
    }


def top_label(probs: np.ndarray | None) -> dict[str, Any] | None:
    """{'label': …, 'confidence': …} of a probability vector over LABELS (None for None)."""
    if probs is None:
        return None
    best = int(np.argmax(probs))
    return {"label": LABELS[best], "confidence": round(float(probs[best]), 4)}
