from __future__ import annotations

import logging

import pytest

from edge.core.labels import LABELS, canonical_label, label_index, warn_skipped


def test_fixed_order() -> None:
    assert LABELS == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


@pytest.mark.parametrize(
    ("alias", "label"),
    [
        ("anger", "angry"),
        ("Sadness", "sad"),
        ("fearful", "fear"),
        ("surprised", "surprise"),
        ("happiness", "happy"),
        ("calm", "neutral"),
        (" Neutral ", "neutral"),
    ],
)
def test_aliases(alias: str, label: str) -> None:
    assert canonical_label(alias) == label
    assert label_index(alias) == LABELS.index(label)


@pytest.mark.parametrize("name", ["contempt", "boredom", ""])
def test_outside_the_seven(name: str) -> None:
    assert canonical_label(name) is None
    assert label_index(name) is None


def test_skips_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        warn_skipped(["contempt", "contempt", "boredom"], "clips")
    assert "skipped 3 clips" in caplog.text
    assert "contempt ×2" in caplog.text
