"""Daemon statistics: cycles per second, per-stage latency (median, p95), counters, CPU, RSS."""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

STAGES = ("capture", "detect", "track", "crop", "features", "inference", "smoothing", "publish")


def rss_bytes() -> int | None:
    """Resident memory of this process (None without psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process(os.getpid()).memory_info().rss)


class Stats:
    """Thread-safe recorder; `snapshot()` covers the time since the previous snapshot.

    Stages are timed with `clock`: wall time (latency) by default; the benchmark passes
    `time.thread_time` to count CPU time instead.
    """

    def __init__(self, window: int = 2000, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._latency: dict[str, deque[float]] = {s: deque(maxlen=window) for s in STAGES}
        self._totals: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._counters: dict[str, int] = defaultdict(int)
        self._cycles = 0
        self._start = self._wall = time.monotonic()
        self._cpu = time.process_time()
        self._cycles_at_snapshot = 0

    def record(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._latency[stage].append(seconds)
            self._totals[stage] += seconds

    def timed(self, stage: str, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)`, its duration recorded under `stage`."""
        start = self.clock()
        out = work(*args)
        self.record(stage, self.clock() - start)
        return out

    def cycle(self) -> None:
        with self._lock:
            self._cycles += 1

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def set_counter(self, name: str, value: int) -> None:
        with self._lock:
            self._counters[name] = value

    @property
    def cycles(self) -> int:
        return self._cycles

    def ms_per_cycle(self) -> dict[str, float]:
        """Time spent in each stage since the start, divided by all cycles (a stage that
        some cycles skip, like inference when nothing is present, counts as 0 there)."""
        with self._lock:
            cycles = max(self._cycles, 1)
            return {stage: 1000.0 * total / cycles for stage, total in self._totals.items()}

    def mean_latency_ms(self) -> float:
        """Mean per-cycle latency over the recorded stages (what `emoedge demo` prints)."""
        with self._lock:
            per_stage = [np.mean(v) for s, v in self._latency.items() if v and s != "capture"]
        return float(np.sum(per_stage) * 1000.0) if per_stage else 0.0

    def snapshot(self) -> dict[str, Any]:
        """The statistics since the last snapshot (rates, CPU) and over the recent window."""
        now, cpu = time.monotonic(), time.process_time()
        with self._lock:
            wall = max(now - self._wall, 1e-9)
            latency = {
                stage: {
                    "median_ms": round(float(np.median(values)) * 1000.0, 3),
                    "p95_ms": round(float(np.percentile(values, 95)) * 1000.0, 3),
                }
                for stage, values in self._latency.items()
                if values
            }
            snap = {
                "uptime_s": round(now - self._start, 1),
                "cycles": self._cycles,
                "cycles_per_s": round((self._cycles - self._cycles_at_snapshot) / wall, 2),
                "latency": latency,
                "counters": dict(self._counters),
                "cpu_percent": round(100.0 * (cpu - self._cpu) / wall, 1),
                "rss_bytes": rss_bytes(),
            }
            self._wall, self._cpu, self._cycles_at_snapshot = now, cpu, self._cycles
        return snap
