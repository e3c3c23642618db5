"""FER+ crowd votes (Barsoum et al. 2016) for FER2013 faces: soft training targets and the
majority label that the face rows are also scored against.

`<fer root>/ferplus.csv` holds 10 votes per face, keyed by the face's path under the root, over
neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown and NF (not a
face). The file is optional: faces without a row keep their original label.

Rules (stated once, used by training and evaluation):
- training target: the votes for the 7 classes, normalised; contempt and unknown votes are
  dropped. A face whose most frequent answer is NF is left out of training. A face without a
  row, or without a single vote for the 7 classes, trains on its original label.
- majority label (evaluation): the answer with strictly the most votes among all 10. Faces whose
  top answers tie, or whose majority is contempt, unknown or NF, are excluded from the FER+ rows
  and counted.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from edge.core.errors import DataError
from edge.core.labels import NUM_CLASSES, label_index

log = logging.getLogger(__name__)

FILE_NAME = "ferplus.csv"
VOTE_COLUMNS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
NUM_VOTES = len(VOTE_COLUMNS)
NOT_A_FACE = VOTE_COLUMNS.index("NF")
# vote column → index in edge.core.labels.LABELS (the 7 emotion columns)
EMOTION_COLUMNS = {c: label_index(name) for c, name in enumerate(VOTE_COLUMNS[:7])}


def read_votes(root: Path) -> dict[str, np.ndarray]:
    """`root/ferplus.csv` as {path under root: 10 vote counts}; empty when there is no file."""
    path = Path(root) / FILE_NAME
    if not path.is_file():
        return {}
    votes: dict[str, np.ndarray] = {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", *VOTE_COLUMNS} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                counts = np.array([int(row[c]) for c in VOTE_COLUMNS], dtype=np.int16)
            except ValueError as error:
                raise DataError(f"{path}:{line}: bad vote count ({error})") from None
            if (counts < 0).any():
                raise DataError(f"{path}:{line}: negative vote count")
            votes[row["file"]] = counts
    log.info("FER+ votes for %d faces from %s", len(votes), path)
    return votes


def emotion_votes(votes: np.ndarray) -> np.ndarray:
    """(N, 10) vote counts → (N, 7) counts over edge.core.labels.LABELS."""
    out = np.zeros((len(votes), NUM_CLASSES), np.float32)
    for column, label in EMOTION_COLUMNS.items():
        out[:, label] = votes[:, column]
    return out


def training_targets(
    votes: np.ndarray, labels: np.ndarray, smoothing: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per face a target distribution (N, 7) and whether it trains at all (N,), by the rules
    above; `smoothing` blends every target with the uniform distribution."""
    emotions = emotion_votes(votes)
    total = emotions.sum(1, keepdims=True)
    has_votes = total[:, 0] > 0
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    targets = np.where(has_votes[:, None], emotions / np.maximum(total, 1), one_hot)
    targets = (1 - smoothing) * targets + smoothing / NUM_CLASSES
    not_a_face = (votes.sum(1) > 0) & (votes.argmax(1) == NOT_A_FACE)
    return targets.astype(np.float32), ~not_a_face


def majority_labels(votes: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """The FER+ majority label per face (−1 where excluded) and the excluded counts by reason:
    no_votes, tie, non_emotion (contempt, unknown or NF)."""
    top = votes.max(1)
    tie = (votes == top[:, None]).sum(1) > 1
    no_votes = votes.sum(1) == 0
    winner = votes.argmax(1)
    non_emotion = ~tie & ~no_votes & (winner >= len(EMOTION_COLUMNS))
    keep = ~(tie | no_votes | non_emotion)
    mapped = np.array([EMOTION_COLUMNS.get(int(w), -1) for w in winner], dtype=np.int64)
    labels = np.where(keep, mapped, -1)
    excluded = {
        "no_votes": int(no_votes.sum()),
        "tie": int((tie & ~no_votes).sum()),
        "non_emotion": int(non_emotion.sum()),
    }
    return labels, excluded
