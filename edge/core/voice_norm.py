"""The statistics an adapting voice is standardised by (a model whose manifest names a
`voice_norm` input): Whisper's states keep the microphone, the room and the language, and a
voice trained with each corpus standardised by its own statistics generalises to speech it
never heard when that speech is standardised by its own too (MODEL_CARD.md, "The adapting
voice"). On the device those statistics are gathered from the voiced windows the daemon
hears, starting from the training corpora's (the prior) and moving towards the room's.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EPS = 1e-3  # added to every spread: a nearly constant dimension is not blown up
FILE_VERSION = 1  # of the saved statistics (VoiceNorm.save)


def statistics(states: np.ndarray) -> np.ndarray:
    """(2, D) float32: the mean and the spread (standard deviation + EPS) of states (N, D)."""
    states = np.asarray(states, np.float64)
    return np.stack([states.mean(0), states.std(0) + EPS]).astype(np.float32)


@dataclass
class VoiceNorm:
    """Running standardisation statistics: the prior counts as `prior_weight` heard windows
    (in the centre and in the variance);
    at most one window is taken every `every_s` seconds (the windows of successive cycles
    overlap), and once `memory` windows are heard older ones fade, so that a new room or a new
    speaker takes over within about `memory` windows."""

    prior: np.ndarray  # (2, D): the training corpora's centre and spread
    prior_weight: float = 30.0
    memory: float = 600.0
    every_s: float = 3.0
    norm: np.ndarray = field(init=False)  # (2, D) float32: what the model is fed now

    def __post_init__(self) -> None:
        self.prior = np.asarray(self.prior, np.float32)
        if self.prior.ndim != 2 or self.prior.shape[0] != 2:
            raise ValueError(f"a voice prior is (2, D), got {self.prior.shape}")
        self.reset()

    def reset(self) -> None:
        """Back to the prior: nothing heard."""
        self.heard = 0.0
        self._sum = np.zeros(self.prior.shape[1], np.float64)
        self._squares = np.zeros(self.prior.shape[1], np.float64)
        self._last_t = -math.inf
        self._update()

    def observe(self, state: np.ndarray, t: float) -> bool:
        """Take one voiced window's mean steps (D,) heard at time `t` (seconds), unless the
        last one taken is less than `every_s` old; True when taken."""
        if t - self._last_t < self.every_s:
            return False
        if self.heard >= self.memory:  # forget in proportion
            keep = (self.memory - 1) / self.heard
            self.heard *= keep
            self._sum *= keep
            self._squares *= keep
        self._last_t = t
        self._add(np.asarray(state, np.float64).reshape(1, -1))
        return True

    def fit(self, states: np.ndarray) -> None:
        """The statistics after hearing `states` (N, D) from the prior (evaluation: a corpus
        by its own clips, as a device that heard them); `reset` returns to the prior."""
        self.reset()
        self._add(np.asarray(states, np.float64))

    def _add(self, states: np.ndarray) -> None:
        self.heard += len(states)
        self._sum += states.sum(0)
        self._squares += (states * states).sum(0)
        self._update()

    def _update(self) -> None:
        """The statistics fed from what is counted: the centre and the variance each move from
        the prior's towards the heard windows' own, by their weights (the shift between the two
        is not spread)."""
        if self.heard == 0:
            self.norm = self.prior.copy()
            return
        mean = self._sum / self.heard
        variance = np.maximum(self._squares / self.heard - mean**2, 0.0)
        weight, heard = self.prior_weight, self.heard
        centre, spread = self.prior.astype(np.float64)
        centre = (weight * centre + heard * mean) / (weight + heard)
        variance = (weight * (spread - EPS) ** 2 + heard * variance) / (weight + heard)
        self.norm = np.stack([centre, np.sqrt(variance) + EPS]).astype(np.float32)

    def prior_digest(self) -> str:
        """Names the prior (and so the model) that saved statistics belong to."""
        return hashlib.sha256(self.prior.tobytes()).hexdigest()[:16]

    def save(self, path: Path) -> None:
        """Write what was heard to `path` (.npz), atomically: a crash leaves the previous file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as f:
            np.savez(
                f, version=FILE_VERSION, prior=self.prior_digest(), heard=self.heard,
                sum=self._sum, squares=self._squares,
            )  # fmt: skip
        os.replace(partial, path)

    def restore(self, path: Path) -> float:
        """Continue from the statistics saved at `path` (VoiceNorm.save) by a run of the same
        model; the windows they count. ValueError (nothing changed) for a file that is not such
        statistics or belongs to another model; OSError when it cannot be read."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                version, prior = int(saved["version"]), str(saved["prior"])
                heard = float(saved["heard"])
                total, squares = saved["sum"], saved["squares"]
        except (KeyError, TypeError, EOFError, ValueError) as error:
            raise ValueError(f"not saved voice statistics ({error})") from None
        if version != FILE_VERSION:
            raise ValueError(f"saved voice statistics version {version}, not {FILE_VERSION}")
        if prior != self.prior_digest():
            raise ValueError("saved by another model (its voice prior differs)")
        shape = self._sum.shape
        if total.shape != shape or squares.shape != shape:
            raise ValueError(f"saved voice statistics of the wrong shape {total.shape}")
        finite = np.isfinite(total).all() and np.isfinite(squares).all() and math.isfinite(heard)
        if not finite or heard < 0:
            raise ValueError("saved voice statistics are not finite and non-negative")
        self.heard = heard
        self._sum, self._squares = total.astype(np.float64), squares.astype(np.float64)
        self._last_t = -math.inf
        self._update()
        return heard
