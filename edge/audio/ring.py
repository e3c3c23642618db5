"""Audio–video alignment: a ring buffer of audio keyed by monotonic time.

Each audio chunk is stamped with the time just after its last sample. The ring keeps the
mapping "sample number ↔ time" of the newest chunk, so the window that ends at a frame's
timestamp is a slice of sample numbers. Samples that have not arrived yet, or that are
older than the ring holds, read as silence: the window stays aligned to the clock.
"""

from __future__ import annotations

import threading

import numpy as np

from edge.capture import AudioChunk


class AudioRing:
    """The last `capacity_s` seconds of mono audio at `sample_rate`, indexed by time."""

    def __init__(self, sample_rate: int, capacity_s: float) -> None:
        self.sample_rate = sample_rate
        self.capacity = int(round(capacity_s * sample_rate))
        self._buffer = np.zeros(self.capacity, dtype=np.float32)
        self._total = 0
        self._t_last: float | None = None
        self._cond = threading.Condition()

    def write(self, chunk: AudioChunk) -> None:
        """Append a chunk (its rate must be the ring's)."""
        if chunk.sample_rate != self.sample_rate:
            raise ValueError(f"chunk at {chunk.sample_rate} Hz in a {self.sample_rate} Hz ring")
        samples = np.asarray(chunk.samples, dtype=np.float32)[-self.capacity :]
        with self._cond:
            start = self._total % self.capacity
            first = min(len(samples), self.capacity - start)
            self._buffer[start : start + first] = samples[:first]
            self._buffer[: len(samples) - first] = samples[first:]
            self._total += len(chunk.samples)
            self._t_last = chunk.t_end
            self._cond.notify_all()

    def wait_until(self, t: float, timeout: float) -> bool:
        """Wait up to `timeout` s for audio up to time `t`; True when it has arrived."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._t_last is not None and self._t_last >= t, timeout
            )

    @property
    def total(self) -> int:
        """How many samples have been written since the start (the next sample's index)."""
        with self._cond:
            return self._total

    def end_index(self, t_end: float) -> int:
        """The absolute index of the sample just after time `t_end` (0 before any audio)."""
        with self._cond:
            if self._t_last is None:
                return 0
            return self._total - int(round((self._t_last - t_end) * self.sample_rate))

    def read(self, start: int, n: int) -> np.ndarray:
        """Samples [start, start + n) by absolute index (float32, silence where absent)."""
        out = np.zeros(n, dtype=np.float32)
        with self._cond:
            lo = max(start, self._total - self.capacity, 0)
            hi = min(start + n, self._total)
            if hi > lo:  # at most two slices of the ring: up to its end, then from its start
                first = lo % self.capacity
                head = min(hi - lo, self.capacity - first)
                out[lo - start : lo - start + head] = self._buffer[first : first + head]
                out[lo - start + head : hi - start] = self._buffer[: hi - lo - head]
        return out

    def window(self, t_end: float, duration_s: float) -> np.ndarray:
        """The `duration_s` of audio that ends at time `t_end` (float32, silence where absent)."""
        n = int(round(duration_s * self.sample_rate))
        return self.read(self.end_index(t_end) - n, n)
