"""Temporal smoothing of class probabilities and the event policy that decides what to report.

The policy reports a new emotion only after it has held for `hold_s` with a smoothed
confidence of at least `threshold` (no flicker); "absent" (label None) counts as a state too.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from edge.core.config import EventConfig, SmoothingConfig


class Smoother:
    """EMA (`alpha` is the weight of the newest probabilities) or a moving-window mean."""

    def __init__(self, cfg: SmoothingConfig) -> None:
        self.cfg = cfg
        self._ema: np.ndarray | None = None
        self._window: deque[np.ndarray] = deque(maxlen=cfg.window)

    def update(self, probs: np.ndarray) -> np.ndarray:
        """Add one probability vector; the smoothed vector so far."""
        probs = np.asarray(probs, dtype=np.float64)
        if self.cfg.method == "window":
            self._window.append(probs)
            return np.mean(self._window, axis=0)
        a = self.cfg.alpha
        self._ema = probs if self._ema is None else a * probs + (1.0 - a) * self._ema
        return self._ema

    def reset(self) -> None:
        """Forget the history (after an absent spell, a new face starts fresh)."""
        self._ema = None
        self._window.clear()


@dataclass(frozen=True)
class Change:
    """The reported emotion changed from `previous` (held `previous_duration_s`) to `current`."""

    previous: str | None
    current: str | None
    previous_duration_s: float


class EventPolicy:
    """Debounces labels into changes and says when the state heartbeat is due."""

    def __init__(self, cfg: EventConfig) -> None:
        self.threshold = cfg.threshold
        self.hold_s = cfg.hold_s
        self.heartbeat_s = cfg.heartbeat_s
        self.reported: str | None = None
        self._reported_since: float | None = None
        self._pending: str | None = None
        self._pending_since: float | None = None
        self._last_state: float | None = None

    def update(self, label: str | None, confidence: float, now: float) -> Change | None:
        """Feed the current (smoothed) label; a Change once a different label has held."""
        if self._reported_since is None:
            self._reported_since = now
        confident = label is None or confidence >= self.threshold
        candidate = label if confident else self.reported
        if candidate == self.reported:
            self._pending_since = None
            return None
        if self._pending_since is None or candidate != self._pending:
            self._pending, self._pending_since = candidate, now
        if now - self._pending_since < self.hold_s:
            return None
        change = Change(self.reported, candidate, now - self._reported_since)
        self.reported, self._reported_since, self._pending_since = candidate, now, None
        return change

    def interrupt(self, now: float) -> Change | None:
        """End the reported emotion at once (inference paused): a Change to None, or None when
        none was reported. What follows starts afresh."""
        change = None
        if self.reported is not None and self._reported_since is not None:
            change = Change(self.reported, None, now - self._reported_since)
        self.reported, self._reported_since, self._pending_since = None, None, None
        return change

    def heartbeat_due(self, now: float) -> bool:
        """True when the state has not been published for `heartbeat_s`."""
        return self._last_state is None or now - self._last_state >= self.heartbeat_s

    def state_published(self, now: float) -> None:
        self._last_state = now

    def republish(self) -> None:
        """Make the next update's state due at once (e.g. after a pause)."""
        self._last_state = None
