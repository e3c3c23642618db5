"""Capture sources: cameras yield `Frame`s, microphones push `AudioChunk`s, all on one clock.

Every frame and chunk carries a `time.monotonic()` timestamp (for file replays: the replay
clock's origin plus the media time), which is how `edge.audio.ring` lines audio up with video.
Frames and audio stay in memory: nothing here writes them anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One camera image (uint8 RGB (H, W, 3) or gray (H, W)) and when it was taken."""

    image: np.ndarray
    t: float
    index: int


@dataclass(frozen=True)
class AudioChunk:
    """Mono float32 samples in [-1, 1]; `t_end` is the time just after the last sample."""

    samples: np.ndarray
    t_end: float
    sample_rate: int


class Camera(Protocol):
    """A frame source: `read()` blocks for the next frame; None at the end of a file."""

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


ChunkSink = Callable[[AudioChunk], None]


class Microphone(Protocol):
    """An audio source that pushes chunks to a sink from its own thread."""

    sample_rate: int
    overflows: int

    def start(self, sink: ChunkSink) -> None: ...

    def stop(self) -> None: ...

    @property
    def finished(self) -> bool:
        """True once a file source has delivered its last chunk (never for a live device)."""


class ReplayClock:
    """Maps media time of replayed files onto the monotonic clock, shared by audio and video.

    `realtime=False` (benchmarks) never waits: timestamps stay media-exact, delivery is
    as fast as the consumer reads.
    """

    def __init__(self, realtime: bool = True) -> None:
        self.realtime = realtime
        self.origin: float | None = None

    def start(self) -> float:
        if self.origin is None:
            self.origin = time.monotonic()
        return self.origin

    def at(self, media_s: float) -> float:
        """The monotonic time of media time `media_s`."""
        return self.start() + media_s

    def wait_until(self, media_s: float, stop: Callable[[], bool] = lambda: False) -> None:
        """Sleep until media time `media_s` is due (no-op when not realtime)."""
        if not self.realtime:
            return
        while not stop():
            left = self.at(media_s) - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))
