"""The running statistics an adapting voice is standardised by (edge.core.voice_norm)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.core.voice_norm import EPS, VoiceNorm, statistics

PRIOR = np.stack([np.zeros(4), np.ones(4)]).astype(np.float32)


def room(n: int, seed: int = 0) -> np.ndarray:
    """Mean steps of a room far from the training corpora: centre 3, spread 0.5."""
    return np.random.default_rng(seed).normal(3.0, 0.5, (n, 4))


def test_it_starts_from_the_prior_and_moves_towards_what_it_hears() -> None:
    norm = VoiceNorm(PRIOR, prior_weight=30, every_s=3.0)
    np.testing.assert_array_equal(norm.norm, PRIOR)
    heard = room(300)
    for i, state in enumerate(heard[:30]):
        assert norm.observe(state, 3.0 * i)
    # thirty windows weigh as much as the prior: half-way, in the centre and in the variance
    np.testing.assert_allclose(norm.norm[0], heard[:30].mean(0) / 2, rtol=1e-5)
    variance = ((1 - EPS) ** 2 + heard[:30].var(0)) / 2  # the prior's spread holds EPS
    np.testing.assert_allclose(norm.norm[1], np.sqrt(variance) + EPS, rtol=1e-5)
    for i, state in enumerate(heard[30:], start=30):
        norm.observe(state, 3.0 * i)
    np.testing.assert_allclose(norm.norm[0], heard.sum(0) / 330, rtol=1e-5)
    variance = (30 * (1 - EPS) ** 2 + 300 * heard.var(0)) / 330
    np.testing.assert_allclose(norm.norm[1], np.sqrt(variance) + EPS, rtol=1e-5)
    norm.reset()
    np.testing.assert_array_equal(norm.norm, PRIOR)
    assert norm.heard == 0


def test_overlapping_windows_are_taken_once_per_window_length() -> None:
    norm = VoiceNorm(PRIOR, every_s=3.0)
    taken = [norm.observe(state, 0.1 * i) for i, state in enumerate(room(61))]
    assert sum(taken) == 3 and taken[0] and taken[30] and taken[60]


def test_after_its_memory_a_new_room_takes_over() -> None:
    norm = VoiceNorm(PRIOR, prior_weight=5, memory=100, every_s=0.0)
    for i, state in enumerate(room(500)):
        norm.observe(state, i)
    for i, state in enumerate(-room(300, seed=1), start=500):  # centre −3
        norm.observe(state, i)
    assert norm.heard == pytest.approx(100)
    # the first room keeps 100 · 0.99^300 ≈ 4.9 of the 100 windows' weight, the prior 5
    old, new = 100 * 0.99**300, 100 - 100 * 0.99**300
    np.testing.assert_allclose(norm.norm[0], (3 * old - 3 * new) / (old + new + 5), atol=0.15)


def test_fit_is_what_a_device_that_heard_those_windows_would_use() -> None:
    heard = room(1000)
    by_fit = VoiceNorm(PRIOR)
    by_fit.fit(heard)
    by_ear = VoiceNorm(PRIOR, memory=1e9, every_s=0.0)
    for i, state in enumerate(heard):
        by_ear.observe(state, i)
    np.testing.assert_allclose(by_fit.norm, by_ear.norm, rtol=1e-4)
    np.testing.assert_allclose(by_fit.norm, statistics(heard), atol=0.1)


def test_a_prior_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(2, D\)"):
        VoiceNorm(np.zeros((3, 4)))
