"""One place that assembles the daemon from a configuration: the model (its manifest read and
verified once), the capture sources, the face detector, the audio ring, the pipeline and the
daemon around them. `emoedge run`, `emoedge demo` and `emoedge bench --pipeline` build here.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from edge.audio.ring import AudioRing
from edge.backends import backend_for, default_manifest
from edge.backends.base import Runner
from edge.capture import ReplayClock
from edge.capture.sources import make_camera, make_microphone
from edge.core.config import Config, ModelConfig
from edge.core.manifest import BUNDLED_MODELS, load_manifest
from edge.daemon.daemon import Daemon, Summary
from edge.daemon.pipeline import Pipeline
from edge.daemon.sdnotify import Notifier
from edge.daemon.stats import Stats
from edge.daemon.voice_memory import VoiceMemory, statistics_path
from edge.mqtt.messages import Publisher
from edge.vision.detect import load_detector

log = logging.getLogger("emoedge.daemon")

# The audio ring holds the model's window plus this much lag behind the microphone.
RING_MARGIN_S = 5.0


def load_runner(cfg: ModelConfig, options: Mapping[str, Mapping[str, Any]] | None = None) -> Runner:
    """The configured model through `edge.backends`, with the options its backend takes
    (`options`: Config.backend, each backend's own options by name)."""
    backend = None if cfg.backend == "auto" else cfg.backend
    if cfg.artifact in BUNDLED_MODELS:
        manifest = default_manifest(backend, cfg.artifact)
    else:
        manifest = load_manifest(Path(cfg.artifact))
    cls = backend_for(manifest.model_file, backend)
    wanted = {
        "threads": cfg.threads,
        "providers": cfg.providers,
        **(options or {}).get(cls.name, {}),
    }
    accepted = {f.name for f in dataclasses.fields(cls.Options)}
    return cls(manifest, **{k: v for k, v in wanted.items() if k in accepted})


def build_daemon(
    config: Config,
    runner: Runner,
    publisher: Publisher,
    notifier: Notifier | None = None,
    *,
    clock: ReplayClock | None = None,
    stats: Stats | None = None,
) -> Daemon:
    """Sources, detector, audio ring and pipeline for `runner`, wired into a Daemon that
    publishes through `publisher`. File sources replay on `clock` (real time by default);
    `stats` times the stages (wall time by default)."""
    one_blas_thread()
    clock = clock or ReplayClock(realtime=True)
    camera = make_camera(config.camera, clock)
    microphone = make_microphone(config.microphone, clock)
    detector = load_detector(config.detector, config.model.threads) if camera else None
    window_s = runner.manifest.audio.window_s
    ring = AudioRing(microphone.sample_rate, window_s + RING_MARGIN_S) if microphone else None
    pipeline = Pipeline(
        runner, detector, ring, config.smoothing, config.events, stats or Stats(), config.fusion,
        voice_memory(runner, config.model.voice_statistics),
    )  # fmt: skip
    return Daemon(
        pipeline,
        publisher,
        camera,
        microphone,
        ring,
        inference_hz=config.inference_hz,
        frame_queue=config.frame_queue,
        max_audio_wait_s=config.max_audio_wait_s,
        stats_interval_s=config.stats_interval_s,
        notifier=notifier,
    )


def voice_memory(runner: Runner, setting: str) -> VoiceMemory | None:
    """Where an adapting voice keeps its statistics (model.voice_statistics), loaded; None for
    a model whose voice does not adapt, or when they are not kept."""
    if runner.voice_norm is None:
        return None
    path = statistics_path(setting)
    if path is None:
        log.info("voice statistics are kept in memory only (model.voice_statistics)")
        return None
    memory = VoiceMemory(runner.voice_norm, path)
    memory.load()
    return memory


def one_blas_thread() -> None:
    """Limit numpy's BLAS to one thread for the rest of the process. The audio front end's
    matrix products (a window's filterbank, its DCT) are small, and between two cycles
    OpenBLAS's idle threads spin: with the default model at 10 cycles/s on a 2-core x86 VM they
    took the daemon from 22 % to 74 % of one core (`emoedge bench --pipeline`, 2026-12-07)."""
    threadpool_limits(limits=1, user_api="blas")


def run_daemon(config: Config, seconds: float | None = None) -> Summary:
    """Load the model, connect MQTT and run until SIGTERM/SIGINT or the end of the input."""
    from edge.mqtt.publisher import MqttPublisher  # paho loads only when the daemon runs

    runner = load_runner(config.model, config.backend)
    log.info("model %s (%s)", runner.manifest.model_id, type(runner).__name__)
    publisher = MqttPublisher(config.mqtt, config.device_id, runner.manifest.model_id)
    daemon = build_daemon(config, runner, publisher, Notifier())
    previous = {
        sig: signal.signal(sig, lambda *_: daemon.stop()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        return daemon.run(max_seconds=seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
