"""`emoedge bench --pipeline`: what the whole device pipeline costs, on one core.

1. Replay the bundled sample as fast as possible (no pacing, the clip loops): cycles/s and
   milliseconds per cycle by stage (decode, detect, features, inference, publish = building
   and JSON-encoding the messages), i.e. the pipeline's overhead next to the model itself.
2. Run the real daemon at 10 cycles/s on the sample in real time: CPU % of one core and the
   resident memory over the run (it should stay flat).
The model is the bundled default, or the first DIR given that holds a manifest.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.capture import AudioChunk, ReplayClock
from edge.capture.camera import FileCamera
from edge.capture.microphone import read_audio_file
from edge.config import CameraConfig, Config, MicConfig, ModelConfig
from edge.daemon_cli import SAMPLE_AUDIO, SAMPLE_VIDEO, build_daemon, load_runner
from edge.detect import load_detector
from edge.errors import UsageError
from edge.messages import CommandHandler, EmotionEvent, EmotionState
from edge.payloads import encode
from edge.pipeline import Pipeline
from edge.stats import Stats, rss_bytes
from edge.sync import AudioRing

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

    def _encode(self, payload: dict[str, Any]) -> None:
        encode(payload)
        self.messages += 1


def _one_core() -> str:
    """Pin this process to one CPU (Linux); which one, for the report."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def _model(args: argparse.Namespace) -> ModelConfig:
    threads = int(str(getattr(args, "threads", "1")).split(",")[0])
    artifacts = [d for d in getattr(args, "dirs", []) if (Path(d) / "manifest.json").is_file()]
    return ModelConfig(artifact=str(artifacts[0]) if artifacts else "default", threads=threads)


def replay_fast(model: ModelConfig, seconds: float) -> dict[str, Any]:
    """Cycles as fast as possible over the looping sample for `seconds` (at least the whole
    clip once); stages in CPU time of this thread (the runtimes run single-threaded in it)."""
    runner = load_runner(model)
    wave, rate = read_audio_file(SAMPLE_AUDIO)
    clock = ReplayClock(realtime=False)
    camera = FileCamera(SAMPLE_VIDEO, clock, loop=True)
    camera.open()
    stats = Stats(window=100_000, clock=time.thread_time)
    ring = AudioRing(rate, runner.manifest.audio.window_s + 2.0)
    pipeline = Pipeline(
        runner, load_detector(Config().detector, model.threads), ring,
        Config().smoothing, Config().events, stats,
    )  # fmt: skip
    publisher = NullPublisher()
    written = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    whole_clip = int(len(wave) / rate * camera.fps)  # every kind of cycle at least once
    while time.perf_counter() - wall0 < seconds or stats.cycles < whole_clip:
        start = time.thread_time()
        frame = camera.read()
        stats.record("capture", time.thread_time() - start)
        media_t = frame.t - clock.start()
        upto = int(media_t * rate)
        while written < upto:  # the audio that has "arrived" by the frame's time
            n = min(1024, upto - written)
            piece = wave.take(np.arange(written, written + n), mode="wrap")
            written += n
            ring.write(AudioChunk(piece, clock.at(written / rate), rate))
        result = pipeline.cycle(frame, frame.t)
        start = time.thread_time()
        if result.event is not None:
            publisher.publish_event(result.event)
        if result.state is not None:
            publisher.publish_state(result.state)
        stats.record("publish", time.thread_time() - start)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    camera.close()
    per_stage = stats.ms_per_cycle()
    overhead = sum(v for k, v in per_stage.items() if k != "inference")
    return {
        "model_id": runner.manifest.model_id,
        "cycles": stats.cycles,
        "cycles_per_s": stats.cycles / wall,
        "cpu_ms_per_cycle": 1000.0 * cpu / stats.cycles,
        "ms_per_cycle": per_stage,
        "overhead_ms_per_cycle": overhead,
        "overhead_vs_inference": overhead / per_stage["inference"],
    }


def run_realtime(model: ModelConfig, seconds: float, hz: float = 10.0) -> dict[str, Any]:
    """The real daemon (threads, queues, pacing) at `hz` on the looping sample."""
    config = Config(
        camera=CameraConfig(source="file", path=str(SAMPLE_VIDEO), loop=True),
        microphone=MicConfig(source="file", path=str(SAMPLE_AUDIO), loop=True),
        model=model,
        inference_hz=hz,
        stats_interval_s=max(seconds, 1.0),
    )
    daemon = build_daemon(config, load_runner(model), NullPublisher())
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample_rss() -> None:
        start = time.monotonic()
        while not done.wait(1.0):
            samples.append((time.monotonic() - start, rss_bytes() or 0))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    cpu0, wall0 = time.process_time(), time.monotonic()
    sampler.start()
    summary = daemon.run(max_seconds=seconds)
    done.set()
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    rss = [r for _, r in samples] or [rss_bytes() or 0]
    tenth = rss[len(rss) // 10]
    return {
        "hz": hz,
        "seconds": wall,
        "cycles": summary.cycles,
        "cpu_percent_of_one_core": 100.0 * cpu / wall,
        "rss_mib": {
            "at_10_percent": tenth / 2**20,
            "end": rss[-1] / 2**20,
            "max": max(rss) / 2**20,
            "growth_after_10_percent": (rss[-1] - tenth) / 2**20,
        },
        "latency": summary.stats["latency"],
    }


def _report(fast: dict[str, Any], live: dict[str, Any], pinned: str) -> str:
    stages = "\n".join(f"    {k:<10} {v:7.2f} ms" for k, v in fast["ms_per_cycle"].items())
    rss = live["rss_mib"]
    return (
        f"pipeline benchmark: model {fast['model_id']}, {pinned}\n"
        f"as fast as possible: {fast['cycles']} cycles, {fast['cycles_per_s']:.1f} cycles/s, "
        f"{fast['cpu_ms_per_cycle']:.2f} CPU ms per cycle\n"
        f"  CPU per cycle by stage (capture = video decode, publish = JSON encode):\n{stages}\n"
        f"  pipeline overhead {fast['overhead_ms_per_cycle']:.2f} ms = "
        f"{fast['overhead_vs_inference']:.2f} × inference\n"
        f"daemon at {live['hz']:g} Hz for {live['seconds']:.0f} s: {live['cycles']} cycles, "
        f"CPU {live['cpu_percent_of_one_core']:.1f} % of one core, RSS "
        f"{rss['at_10_percent']:.1f} MiB → {rss['end']:.1f} MiB (max {rss['max']:.1f})"
    )


def run_pipeline_bench(args: argparse.Namespace) -> int:
    """Entry point for `emoedge bench --pipeline` (args: seconds, json, threads, dirs)."""
    seconds = float(getattr(args, "seconds", 10.0))
    if seconds <= 0:
        raise UsageError(f"--seconds must be > 0, got {seconds}")
    pinned = _one_core()
    model = _model(args)
    fast = replay_fast(model, seconds)
    live = run_realtime(model, seconds)
    print(_report(fast, live, pinned))
    if getattr(args, "json", None):
        Path(args.json).write_text(
            json.dumps({"pinned": pinned, "fast": fast, "realtime": live}, indent=2) + "\n"
        )
    return 0
