"""The daemon's configuration: one TOML file, one typed and validated schema.

Every error is a ConfigError that names the key, the value and what is allowed. Secrets
(the MQTT password) never live here: `[mqtt]` names an environment variable or a file.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.backends import BACKENDS
from edge.core.config_table import ConfigTable, collected, report, section
from edge.core.errors import ConfigError
from edge.core.fusion import MAX_VOICE_WEIGHT, MODES, FusionConfig
from edge.mqtt.config import MqttConfig, parse_mqtt_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CAMERA_SOURCES = ("picamera2", "opencv", "file", "none")
MIC_SOURCES = ("pyaudio", "file", "none")
DETECTORS = ("blazeface", "haar")
SMOOTHING = ("ema", "window")
DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class CameraConfig:
    """Where frames come from. `device` is an OpenCV index, a GStreamer pipeline or a file."""

    source: str = "opencv"
    device: int | str = 0
    path: str = ""
    width: int = 640
    height: int = 480
    fps: float = 15.0
    lores_width: int = 320
    lores_height: int = 240
    loop: bool = False


@dataclass(frozen=True)
class MicConfig:
    """Where audio comes from. `device` is a PyAudio index or (part of) a device name."""

    source: str = "pyaudio"
    device: int | str | None = None
    path: str = ""
    sample_rate: int = 16000
    chunk: int = 1024
    offset_s: float = 0.0
    loop: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """Which artifact runs and how: "default" is the bundled model, "auto" picks the backend
    from the model file; `providers` apply to onnxruntime only."""

    artifact: str = "default"
    backend: str = "auto"
    threads: int = 1
    providers: tuple[str, ...] = ("CPUExecutionProvider",)


@dataclass(frozen=True)
class SmoothingConfig:
    """Temporal smoothing of the probabilities: an EMA with `alpha` or a moving window."""

    method: str = "ema"
    alpha: float = 0.4
    window: int = 5


@dataclass(frozen=True)
class EventConfig:
    """A new emotion is reported once it holds `hold_s` above `threshold`; state heartbeat."""

    threshold: float = 0.4
    hold_s: float = 1.0
    heartbeat_s: float = 30.0


@dataclass(frozen=True)
class DetectorConfig:
    """Face detector; faces smaller than `min_size` (fraction of the frame's short side) are
    ignored. Detect-then-track: the detector runs once `interval_s` has passed since its last
    run; in between the last box is reused while its crop differs from the crop taken at the
    detection by at most `max_drift` (mean absolute difference of the gray crop, as a fraction
    of full scale). Beyond that the box is moved to where that crop matches best (OpenCV
    template matching), and the detector runs at once if even the moved box's crop differs by
    more. `interval_s = 0` detects on every cycle."""

    kind: str = "blazeface"
    min_size: float = 0.08
    score_threshold: float = 0.5
    interval_s: float = 1.0
    max_drift: float = 0.06


@dataclass(frozen=True)
class Config:
    """Everything the daemon needs, validated."""

    device_id: str = "emoedge"
    camera: CameraConfig = field(default_factory=CameraConfig)
    microphone: MicConfig = field(default_factory=MicConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    inference_hz: float = 10.0
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    events: EventConfig = field(default_factory=EventConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    frame_queue: int = 4
    max_audio_wait_s: float = 0.25
    stats_interval_s: float = 60.0
    mqtt: MqttConfig = field(default_factory=MqttConfig)


def _device(t: ConfigTable, default: int | str | None, rule: str) -> int | str | None:
    """A device given as an index >= 0 or a non-empty name."""
    return t.get(
        "device",
        (int, str),
        default,
        lambda v: v != "" and not (isinstance(v, int) and v < 0),
        rule,
    )


def _camera(t: ConfigTable) -> CameraConfig:
    t.check_keys({"source", "device", "path", "width", "height", "fps", "lores_width",
                  "lores_height", "loop"})  # fmt: skip
    d = CameraConfig()
    source = t.choice("source", CAMERA_SOURCES, d.source)
    path = t.get("path", (str,), "", allowed="a video file path")
    if source == "file" and not path:
        report(f"{t.key('path')}: required when camera.source is 'file'")
    return CameraConfig(
        source=source,
        device=_device(t, d.device, "a camera index >= 0, a GStreamer pipeline or a video file"),
        path=path,
        width=t.integer("width", d.width, 16, 8192),
        height=t.integer("height", d.height, 16, 8192),
        fps=t.number("fps", d.fps, 0.5, 240.0),
        lores_width=t.integer("lores_width", d.lores_width, 16, 8192),
        lores_height=t.integer("lores_height", d.lores_height, 16, 8192),
        loop=t.flag("loop", d.loop),
    )


def _microphone(t: ConfigTable) -> MicConfig:
    t.check_keys({"source", "device", "path", "sample_rate", "chunk", "offset_s", "loop"})
    d = MicConfig()
    source = t.choice("source", MIC_SOURCES, d.source)
    path = t.get("path", (str,), "", allowed="a wav or flac file path")
    if source == "file" and not path:
        report(f"{t.key('path')}: required when microphone.source is 'file'")
    return MicConfig(
        source=source,
        device=_device(t, None, "a PyAudio device index >= 0 or a device name"),
        path=path,
        sample_rate=t.integer("sample_rate", d.sample_rate, 8000, 192000),
        chunk=t.integer("chunk", d.chunk, 64, 65536),
        offset_s=t.number("offset_s", d.offset_s, -60.0, 60.0, " seconds"),
        loop=t.flag("loop", d.loop),
    )


def _model(t: ConfigTable) -> ModelConfig:
    t.check_keys({"artifact", "backend", "threads", "providers"})
    d = ModelConfig()
    providers = t.get(
        "providers", (list,), list(d.providers),
        lambda v: bool(v) and all(isinstance(p, str) and p for p in v),
        'a non-empty list of ONNX Runtime provider names, e.g. ["CPUExecutionProvider"]',
    )  # fmt: skip
    return ModelConfig(
        artifact=t.get("artifact", (str,), d.artifact, bool, '"default" or an artifact path'),
        backend=t.choice("backend", ("auto", *BACKENDS), d.backend),
        threads=t.integer("threads", d.threads, 1, 64),
        providers=tuple(providers),
    )


def _smoothing(t: ConfigTable) -> SmoothingConfig:
    t.check_keys({"method", "alpha", "window"})
    d = SmoothingConfig()
    alpha = t.get("alpha", (int, float), d.alpha, lambda v: 0 < v <= 1, "a number in (0, 1]")
    return SmoothingConfig(
        method=t.choice("method", SMOOTHING, d.method),
        alpha=alpha,
        window=t.integer("window", d.window, 1, 1000),
    )


def _events(t: ConfigTable) -> EventConfig:
    t.check_keys({"threshold", "hold_s", "heartbeat_s"})
    d = EventConfig()
    return EventConfig(
        threshold=t.number("threshold", d.threshold, 0.0, 1.0),
        hold_s=t.number("hold_s", d.hold_s, 0.0, 3600.0, " seconds"),
        heartbeat_s=t.number("heartbeat_s", d.heartbeat_s, 0.1, 86400.0, " seconds"),
    )


def _detector(t: ConfigTable) -> DetectorConfig:
    t.check_keys({"kind", "min_size", "score_threshold", "interval_s", "max_drift"})
    d = DetectorConfig()
    return DetectorConfig(
        kind=t.choice("kind", DETECTORS, d.kind),
        min_size=t.number("min_size", d.min_size, 0.0, 1.0, " (fraction of the frame)"),
        score_threshold=t.number("score_threshold", d.score_threshold, 0.0, 1.0),
        interval_s=t.number("interval_s", d.interval_s, 0.0, 3600.0, " seconds"),
        max_drift=t.number("max_drift", d.max_drift, 0.0, 1.0, " (fraction of full scale)"),
    )


def _fusion(t: ConfigTable) -> FusionConfig:
    t.check_keys({"mode", "voice_weight"})
    d = FusionConfig()
    return FusionConfig(
        mode=t.choice("mode", MODES, d.mode),
        voice_weight=t.number("voice_weight", d.voice_weight, 0.0, MAX_VOICE_WEIGHT),
    )


def parse_config(data: dict[str, Any]) -> Config:
    """Validate a parsed TOML document into a Config; one ConfigError lists every problem."""
    with collected():
        config = _parse(data)
    return config


def _parse(data: dict[str, Any]) -> Config:
    top = ConfigTable(data, "")
    top.check_keys({"device_id", "camera", "microphone", "model", "rates", "smoothing",
                    "events", "detector", "fusion", "queues", "stats", "mqtt"})  # fmt: skip
    d = Config()
    camera = section(lambda: _camera(top.sub("camera")), d.camera)
    microphone = section(lambda: _microphone(top.sub("microphone")), d.microphone)
    if camera.source == "none" and microphone.source == "none":
        report(
            "camera.source: 'none' together with microphone.source 'none' leaves nothing to "
            "analyse; allowed: at least one real source"
        )
    rates = section(lambda: top.sub("rates"), ConfigTable({}, "rates"))
    queues = section(lambda: top.sub("queues"), ConfigTable({}, "queues"))
    stats = section(lambda: top.sub("stats"), ConfigTable({}, "stats"))
    rates.check_keys({"inference_hz"})
    queues.check_keys({"frames", "max_audio_wait_s"})
    stats.check_keys({"interval_s"})
    return Config(
        device_id=top.get(
            "device_id",
            (str,),
            d.device_id,
            lambda v: bool(DEVICE_ID.match(v)),
            "1..64 characters of A-Z, a-z, 0-9, _ and - (it becomes an MQTT topic level)",
        ),
        camera=camera,
        microphone=microphone,
        model=section(lambda: _model(top.sub("model")), d.model),
        inference_hz=rates.number("inference_hz", d.inference_hz, 0.01, 120.0, " cycles/s"),
        smoothing=section(lambda: _smoothing(top.sub("smoothing")), d.smoothing),
        events=section(lambda: _events(top.sub("events")), d.events),
        detector=section(lambda: _detector(top.sub("detector")), d.detector),
        fusion=section(lambda: _fusion(top.sub("fusion")), d.fusion),
        frame_queue=queues.integer("frames", d.frame_queue, 1, 1024),
        max_audio_wait_s=queues.number("max_audio_wait_s", d.max_audio_wait_s, 0.0, 5.0),
        stats_interval_s=stats.number("interval_s", d.stats_interval_s, 1.0, 86400.0, " s"),
        mqtt=section(lambda: parse_mqtt_config(data.get("mqtt", {})), d.mqtt),
    )


def _unreadable(path: str, what: str) -> str | None:
    """Why `path` cannot serve as `what`, or None when it exists and can be read."""
    target = Path(path)
    if not target.exists():
        return f"{what} not found: {path!r}"
    if not os.access(target, os.R_OK):
        return f"{what} {path!r} is not readable by this user"
    return None


def check_files(config: Config) -> None:
    """Report every file the configuration names that does not exist or cannot be read (the
    TLS files are checked while parsing)."""
    named = [
        ("camera.path", config.camera.path, "video file", config.camera.source == "file"),
        ("microphone.path", config.microphone.path, "audio file",
         config.microphone.source == "file"),
        ("model.artifact", config.model.artifact, "model artifact",
         config.model.artifact != "default"),
        ("mqtt.password_file", config.mqtt.password_file or "", "password file",
         bool(config.mqtt.password_file)),
    ]  # fmt: skip
    for key, path, what, used in named:
        problem = _unreadable(path, what) if used and path else None
        if problem:
            report(f"{key}: {problem}")


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML configuration file and check that the files it names exist
    and are readable; one ConfigError lists every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read configuration file {path}: {error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    try:
        with collected():
            config = _parse(data)
            check_files(config)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    return config
