"""Smoothing (EMA, window) and the event policy: hold time, confidence threshold, heartbeat."""

from __future__ import annotations

import numpy as np
import pytest

from edge.core.config import EventConfig, SmoothingConfig
from edge.daemon.smoothing import Change, EventPolicy, Smoother


def test_ema() -> None:
    s = Smoother(SmoothingConfig(method="ema", alpha=0.25))
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    np.testing.assert_allclose(s.update(a), a)
    np.testing.assert_allclose(s.update(b), 0.25 * b + 0.75 * a)
    s.reset()
    np.testing.assert_allclose(s.update(b), b)


def test_window() -> None:
    s = Smoother(SmoothingConfig(method="window", window=2))
    for p in ([1.0, 0.0], [0.0, 1.0], [0.0, 1.0]):
        out = s.update(np.array(p))
    np.testing.assert_allclose(out, [0.0, 1.0])


def test_a_new_label_is_reported_only_after_holding() -> None:
    policy = EventPolicy(EventConfig(threshold=0.5, hold_s=1.0))
    assert policy.update("happy", 0.9, 0.0) is None
    assert policy.update("happy", 0.9, 0.5) is None
    assert policy.update("happy", 0.9, 1.0) == Change(None, "happy", 1.0)
    assert policy.reported == "happy"
    # flicker: sad never holds for a second
    for t, label in [(1.2, "sad"), (1.7, "happy"), (1.9, "sad"), (2.5, "happy"), (2.8, "sad")]:
        assert policy.update(label, 0.9, t) is None
    change = policy.update("sad", 0.9, 3.8)
    assert change == Change("happy", "sad", pytest.approx(2.8))


def test_low_confidence_never_changes_the_report() -> None:
    policy = EventPolicy(EventConfig(threshold=0.6, hold_s=0.5))
    policy.update("neutral", 0.8, 0.0)
    assert policy.update("neutral", 0.8, 0.5) is not None
    for t in np.arange(0.6, 10.0, 0.1):
        assert policy.update("angry", 0.59, float(t)) is None
    assert policy.reported == "neutral"


def test_absent_is_a_state_with_the_same_hold() -> None:
    policy = EventPolicy(EventConfig(threshold=0.3, hold_s=0.4))
    policy.update("fear", 0.5, 0.0)
    policy.update("fear", 0.5, 0.4)
    assert policy.update(None, 0.0, 1.0) is None
    assert policy.update(None, 0.0, 1.5) == Change("fear", None, pytest.approx(1.1))


def test_heartbeat() -> None:
    policy = EventPolicy(EventConfig(heartbeat_s=5.0))
    assert policy.heartbeat_due(0.0)
    policy.state_published(0.0)
    assert not policy.heartbeat_due(4.9)
    assert policy.heartbeat_due(5.0)
