"""`emoedge bench --pipeline`: what the whole device pipeline costs, on one core.

1. Replay the bundled sample as fast as possible for `--seconds` (no pacing, the clip loops):
   cycles/s and CPU milliseconds per cycle by stage (capture = video decode and audio into the
   ring, detect, crop, features, inference, smoothing = smoothing, event policy and building
   the messages, publish = JSON encoding), i.e. the pipeline's overhead next to the model.
2. Run the real daemon at `--rate` cycles/s (10) on the looping sample in real time for
   `--duration` seconds (default: `--seconds`): CPU % of one core and resident memory sampled
   over the run, with the memory's growth and slope (it should stay flat).
The model is the bundled default, or the first DIR given that holds a manifest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends import BUNDLES
from edge.capture import AudioChunk, ReplayClock
from edge.capture.camera import FileCamera
from edge.capture.microphone import FileMicrophone
from edge.cli import Command
from edge.core.config import CameraConfig, Config, MicConfig, ModelConfig
from edge.core.errors import UsageError
from edge.core.manifest import BUNDLED_MODELS
from edge.daemon.cli import SAMPLE_AUDIO, SAMPLE_VIDEO
from edge.daemon.stats import Stats, rss_bytes
from edge.daemon.wiring import build_daemon, load_runner
from edge.mqtt.messages import CommandHandler, EmotionEvent, EmotionState, encode

log = logging.getLogger("emoedge.bench")


class NullPublisher:
    """A Publisher that encodes every message as the MQTT layer would, then drops it."""

    def __init__(self) -> None:
        self.messages = 0

    def start(self) -> None: ...

    def publish_state(self, state: EmotionState) -> None:
        self._encode(state.to_dict())

    def publish_event(self, event: EmotionEvent) -> None:
        self._encode(event.to_dict())

    def publish_stats(self, stats: dict[str, Any]) -> None:
        self._encode(stats)

    def set_command_handler(self, handler: CommandHandler) -> None: ...

    def stop(self) -> None: ...

    def problem(self) -> str | None:
        return None

    def _encode(self, payload: dict[str, Any]) -> None:
        encode(payload)
        self.messages += 1


def _one_core() -> str:
    """Pin every thread of this process (the runtimes' and numpy's pools included) and the
    threads it starts later to one CPU (Linux); which one, for the report."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    cpu = min(os.sched_getaffinity(0))
    tasks = Path("/proc/self/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]:
        with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
            os.sched_setaffinity(tid, {cpu})
    return f"pinned to CPU {cpu}"


def _model(args: argparse.Namespace) -> ModelConfig:
    """The model to run: the first DIR, as a bundled model's name or folder or an artifact
    folder; the bundled default without one."""
    threads = int(str(getattr(args, "threads", "1")).split(",")[0])
    dirs = [str(d) for d in getattr(args, "dirs", None) or []]
    return ModelConfig(artifact=_artifact(dirs[0]) if dirs else "default", threads=threads)


def _artifact(given: str) -> str:
    """`given` as model.artifact: a bundled model's name (also for its folder under BUNDLES) or
    an artifact folder; a UsageError naming what was expected otherwise."""
    path = Path(given)
    if given in BUNDLED_MODELS or (path / "manifest.json").is_file():
        return given
    if path.name in BUNDLED_MODELS and path.resolve() == (BUNDLES / path.name).resolve():
        return path.name
    raise UsageError(
        f"bench --pipeline runs one model: {given} is neither a bundled model "
        f"({', '.join(BUNDLED_MODELS)}, or its folder) nor an artifact folder with a manifest.json"
    )


def sample_config(model: ModelConfig, hz: float = 10.0, stats_interval_s: float = 10.0) -> Config:
    """The daemon's configuration on the looping bundled sample, defaults otherwise."""
    return Config(
        camera=CameraConfig(source="file", path=str(SAMPLE_VIDEO), loop=True),
        microphone=MicConfig(source="file", path=str(SAMPLE_AUDIO), loop=True),
        model=model,
        inference_hz=hz,
        stats_interval_s=stats_interval_s,
    )


def replay_fast(model: ModelConfig, seconds: float) -> dict[str, Any]:
    """Cycles as fast as possible over the looping sample for `seconds` (at least the whole
    clip once); stages in CPU time of this thread (the runtimes run single-threaded in it).
    The daemon is the real one, driven cycle by cycle from this thread: frames are read
    and the audio that has "arrived" by each frame's time is written to its ring here."""
    runner = load_runner(model)
    clock = ReplayClock(realtime=False)
    stats = Stats(window=100_000, clock=time.thread_time)
    daemon = build_daemon(sample_config(model), runner, NullPublisher(), clock=clock, stats=stats)
    camera, microphone, ring = daemon.camera, daemon.microphone, daemon.ring
    assert isinstance(camera, FileCamera) and isinstance(microphone, FileMicrophone) and ring
    wave, rate = microphone.samples, microphone.sample_rate
    camera.open()
    written = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    whole_clip = int(len(wave) / rate * camera.fps)  # every kind of cycle at least once
    daemon_log = logging.getLogger("emoedge.daemon")
    level = daemon_log.level
    daemon_log.setLevel(logging.WARNING)  # no line per event at hundreds of cycles a second
    while time.perf_counter() - wall0 < seconds or stats.cycles < whole_clip:
        start = time.thread_time()
        frame = camera.read()
        assert frame is not None  # the clip loops
        upto = int((frame.t - clock.start()) * rate)
        while written < upto:
            pos = written % len(wave)
            piece = wave[pos : pos + min(1024, upto - written)]
            written += len(piece)
            ring.write(AudioChunk(piece, clock.at(written / rate), rate))
        stats.record("capture", time.thread_time() - start)
        daemon.cycle(frame, frame.t)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    daemon_log.setLevel(level)
    camera.close()
    per_stage = stats.ms_per_cycle()
    inference = per_stage["inference"]
    overhead = sum(v for k, v in per_stage.items() if k != "inference")
    cpu_per_cycle = 1000.0 * cpu / stats.cycles
    assert daemon.pipeline.tracker is not None
    return {
        "model_id": runner.manifest.model_id,
        "cycles": stats.cycles,
        "detections": daemon.pipeline.tracker.detections,
        "cycles_per_s": stats.cycles / wall,
        "cpu_ms_per_cycle": cpu_per_cycle,
        "ms_per_cycle": per_stage,
        "overhead_ms_per_cycle": overhead,
        "overhead_vs_inference": overhead / inference,
        "all_but_inference_vs_inference": (cpu_per_cycle - inference) / inference,
        "inference_median_ms_per_run": stats.snapshot()["latency"]["inference"]["median_ms"],
    }


def _slope_per_hour(times: list[float], values: list[float]) -> float:
    """Least-squares slope of `values` over `times` (seconds), per hour; 0 for < 2 points."""
    if len(times) < 2 or times[-1] == times[0]:
        return 0.0
    return float(np.polyfit(times, values, 1)[0]) * 3600.0


def _resources(samples: list[tuple[float, float, int]], windows: int = 10) -> dict[str, Any]:
    """CPU % of one core per window and resident memory from (time, CPU s, RSS) samples: the
    memory after the first tenth (warm-up), at the end, its growth and its slope."""
    step = max(len(samples) // windows, 1)
    marks = samples[::step]
    if marks[-1] is not samples[-1]:
        marks.append(samples[-1])
    over_time = [
        {"t_s": round(b[0], 1), "cpu_percent": round(100.0 * (b[1] - a[1]) / (b[0] - a[0]), 2),
         "rss_mib": round(b[2] / 2**20, 2)}
        for a, b in itertools.pairwise(marks)
    ]  # fmt: skip
    settled = samples[len(samples) // 10 :]
    rss = [r / 2**20 for _, _, r in settled]
    return {
        "over_time": over_time,
        "samples": [[round(t, 1), round(c, 3), r] for t, c, r in samples],  # s, CPU s, bytes
        "rss_mib": {
            "at_10_percent": rss[0],
            "end": rss[-1],
            "max": max(rss),
            "growth_after_10_percent": rss[-1] - rss[0],
            "slope_mib_per_hour": _slope_per_hour([t for t, _, _ in settled], rss),
        },
    }


def run_realtime(model: ModelConfig, seconds: float, hz: float = 10.0) -> dict[str, Any]:
    """The real daemon (threads, queues, pacing) at `hz` on the looping sample for `seconds`;
    CPU time and RSS of the whole process sampled every second (every 2 % of a long run)."""
    config = sample_config(model, hz, stats_interval_s=max(seconds, 1.0))
    daemon = build_daemon(config, load_runner(model), NullPublisher())
    start = time.monotonic()
    samples: list[tuple[float, float, int]] = [(0.0, time.process_time(), rss_bytes() or 0)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(max(1.0, seconds / 50)):
            samples.append((time.monotonic() - start, time.process_time(), rss_bytes() or 0))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    summary = daemon.run(max_seconds=seconds)
    done.set()
    sampler.join()
    wall, cpu = time.monotonic() - start, time.process_time() - samples[0][1]
    return {
        "hz": hz,
        "seconds": wall,
        "cycles": summary.cycles,
        "cpu_percent_of_one_core": 100.0 * cpu / wall,
        **_resources(samples),
        "latency": summary.stats["latency"],
    }


def _report(fast: dict[str, Any], live: dict[str, Any], pinned: str) -> str:
    stages = "\n".join(f"    {k:<10} {v:7.3f} ms" for k, v in fast["ms_per_cycle"].items())
    outside = fast["cpu_ms_per_cycle"] - sum(fast["ms_per_cycle"].values())
    rss = live["rss_mib"]
    over_time = "\n".join(
        f"    {w['t_s']:7.0f} s  CPU {w['cpu_percent']:5.1f} %  RSS {w['rss_mib']:6.1f} MiB"
        for w in live["over_time"]
    )
    return (
        f"pipeline benchmark: model {fast['model_id']}, {pinned}\n"
        f"as fast as possible: {fast['cycles']} cycles ({fast['detections']} face detections), "
        f"{fast['cycles_per_s']:.1f} cycles/s, {fast['cpu_ms_per_cycle']:.2f} CPU ms per cycle\n"
        f"  CPU per cycle by stage (capture = video decode + audio into the ring, "
        f"publish = JSON encode):\n{stages}\n"
        f"    (outside the stages: {outside:.3f} ms: the loop, timers, other threads)\n"
        f"  pipeline overhead {fast['overhead_ms_per_cycle']:.3f} ms = "
        f"{fast['overhead_vs_inference']:.2f} × inference per cycle (absent cycles run none; "
        f"one run takes {fast['inference_median_ms_per_run']:.3f} ms, median); all the "
        f"process's CPU but inference: {fast['all_but_inference_vs_inference']:.2f} ×\n"
        f"daemon at {live['hz']:g} Hz for {live['seconds']:.0f} s: {live['cycles']} cycles, "
        f"CPU {live['cpu_percent_of_one_core']:.1f} % of one core, RSS "
        f"{rss['at_10_percent']:.1f} MiB (after 10 %) → {rss['end']:.1f} MiB "
        f"(max {rss['max']:.1f}, slope {rss['slope_mib_per_hour']:+.2f} MiB/h)\n"
        f"  over time:\n{over_time}"
    )


def run_pipeline_bench(args: argparse.Namespace) -> int:
    """`emoedge bench --pipeline` (args: seconds, rate, duration, json, threads, dirs;
    `duration` is optional and defaults to `seconds`)."""
    seconds = float(getattr(args, "seconds", 10.0))
    hz = float(getattr(args, "rate", 10.0))
    duration = float(getattr(args, "duration", None) or seconds)
    for name, value in (("--seconds", seconds), ("--rate", hz), ("--duration", duration)):
        if value <= 0:
            raise UsageError(f"{name} must be > 0, got {value:g}")
    pinned = _one_core()
    model = _model(args)
    fast = replay_fast(model, seconds)
    live = run_realtime(model, duration, hz)
    print(_report(fast, live, pinned))
    if getattr(args, "json", None):
        Path(args.json).write_text(
            json.dumps({"pinned": pinned, "fast": fast, "realtime": live}, indent=2) + "\n"
        )
    return 0


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--duration", type=float,
        help="--pipeline: seconds of the real-time part at --rate (a soak: 600)",
    )  # fmt: skip


BENCH = Command(
    help="benchmark the whole device pipeline instead (edge.daemon.bench)",
    configure=_configure,
    run=run_pipeline_bench,
)
