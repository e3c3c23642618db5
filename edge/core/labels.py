"""The seven emotion classes in their one fixed order, and the aliases real corpora use."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
NUM_CLASSES = len(LABELS)
LABEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(LABELS)}

ALIASES: dict[str, str] = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "happiness": "happy",
    "joy": "happy",
    "calm": "neutral",
    "sadness": "sad",
    "surprised": "surprise",
}

log = logging.getLogger(__name__)


def canonical_label(name: str) -> str | None:
    """Map a corpus class name onto one of LABELS; None when it is outside the seven."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in LABEL_INDEX else None


def label_index(name: str) -> int | None:
    """Index of a corpus class name in LABELS, or None when it is outside the seven."""
    canonical = canonical_label(name)
    return None if canonical is None else LABEL_INDEX[canonical]


def warn_skipped(skipped: Iterable[str], what: str) -> None:
    """Log one warning naming how many items of which unknown classes were skipped."""
    counts = Counter(skipped)
    if counts:
        detail = ", ".join(f"{name} ×{n}" for name, n in sorted(counts.items()))
        log.warning("skipped %d %s outside the 7 classes (%s)", sum(counts.values()), what, detail)
