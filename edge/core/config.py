"""The daemon's configuration: one TOML file, one typed and validated schema.

Each key is declared once, below, as a dataclass field (edge.core.settings.setting): its
default, range, unit and help. The parser, its errors (naming the key, the value and what is
allowed) and the commented template (edge/templates/config.toml, `emoedge config template`)
follow from that. Secrets (the MQTT password) never live here: `[mqtt]` names an environment
variable or a file.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from edge.backends import BACKENDS
from edge.capture.sources import CAMERAS, MICROPHONES
from edge.core.errors import ConfigError
from edge.core.fusion import FusionConfig
from edge.core.manifest import BUNDLED_MODELS
from edge.core.settings import collected, join, read_table, report, section, setting
from edge.core.template import render
from edge.mqtt.config import MqttConfig
from edge.vision.detect import DETECTORS as DETECTOR_REGISTRY

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger("emoedge.config")

CAMERA_SOURCES = CAMERAS.names()
MIC_SOURCES = MICROPHONES.names()
DETECTORS = DETECTOR_REGISTRY.names()
SMOOTHING = ("ema", "window")
DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The publisher re-sends the retained state once this many state heartbeats went by without
# a state (paused, or the pipeline stalled); while it runs, the pipeline's heartbeat is the one.
STATE_RESEND_HEARTBEATS = 2

HEADER = """\
emoedge daemon configuration (`emoedge run --config FILE`; check it with
`emoedge config check FILE`). Every key is optional; the values shown are the defaults, and
a key shown commented out is an example (or has no default). Frames and audio never leave the
process and are never written to disk: only emotion estimates are published.
`emoedge config template` prints this template afresh."""


def _device(v: int | str) -> bool:
    """An index >= 0 or a non-empty name."""
    return v != "" and not (isinstance(v, int) and v < 0)


@dataclass(frozen=True)
class CameraConfig:
    """Where frames come from. `device` is an OpenCV index, a GStreamer pipeline or a file."""

    source: str = setting(
        "opencv",
        choices=CAMERA_SOURCES,
        help="picamera2 (Raspberry Pi camera module), opencv (USB/V4L2 index, GStreamer "
        "pipeline or video file), file (replay a video file on the clock), or none (voice only).",
    )
    device: int | str = setting(
        0,
        check=_device,
        rule="a camera index >= 0, a GStreamer pipeline or a video file",
        help="opencv: a device index (0 = /dev/video0) or a GStreamer pipeline ending in "
        "appsink.\nFor example a Jetson CSI camera:\n"
        '    device = "nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720,'
        "framerate=30/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! "
        'video/x-raw,format=BGR ! appsink drop=true max-buffers=1"',
    )
    path: str = setting(
        "",
        rule="a video file path",
        example="/var/lib/emoedge/clip.avi",
        help='file: the video to replay (required with source = "file").',
    )
    width: int = setting(640, low=16, high=8192, help="Frame width in pixels.")
    height: int = setting(480, low=16, high=8192, help="Frame height in pixels.")
    fps: float = setting(15.0, low=0.5, high=240.0, help="Frames per second asked of the camera.")
    lores_width: int = setting(
        320,
        low=16,
        high=8192,
        help="picamera2: faces are detected on a low-resolution stream (its gray Y plane) of "
        "this width.",
    )
    lores_height: int = setting(
        240, low=16, high=8192, help="picamera2: the low-resolution stream's height."
    )
    loop: bool = setting(False, example=False, help="file: start over at the video's end.")

    def checked(self, table: dict[str, Any], key: str) -> CameraConfig:
        """Report a file source without a path."""
        if self.source == "file" and not self.path:
            report(f"{join(key, 'path')}: required when camera.source is 'file'")
        return self


@dataclass(frozen=True)
class MicConfig:
    """Where audio comes from. `device` is a PyAudio index or (part of) a device name."""

    source: str = setting(
        "pyaudio",
        choices=MIC_SOURCES,
        help="pyaudio (a live microphone through PortAudio/ALSA), file (replay a wav/flac), "
        "or none (face only).",
    )
    device: int | str | None = setting(
        None,
        check=_device,
        rule="a PyAudio device index >= 0 or a device name",
        example="USB",
        help="A PyAudio input device index or part of its name; leave out for the default.",
    )
    path: str = setting(
        "",
        rule="a wav or flac file path",
        example="/var/lib/emoedge/clip.flac",
        help='file: the audio to replay (required with source = "file").',
    )
    sample_rate: int = setting(16000, low=8000, high=192000, help="Samples per second.")
    chunk: int = setting(
        1024, low=64, high=65536, help="Samples per PortAudio callback (1024 at 16 kHz = 64 ms)."
    )
    offset_s: float = setting(
        0.0,
        low=-60.0,
        high=60.0,
        unit=" seconds",
        example=0.0,
        help="file: the audio's start relative to the video.",
    )
    loop: bool = setting(False, example=False, help="file: start over at the audio's end.")

    def checked(self, table: dict[str, Any], key: str) -> MicConfig:
        """Report a file source without a path."""
        if self.source == "file" and not self.path:
            report(f"{join(key, 'path')}: required when microphone.source is 'file'")
        return self


@dataclass(frozen=True)
class ModelConfig:
    """Which artifact runs and how: "default" (or "lite") is a bundled model, "auto"
    picks the backend from the model file; `providers` apply to onnxruntime only."""

    artifact: str = setting(
        "default",
        check=bool,
        rule='"default", "lite" or an artifact path',
        help='"default" = the model bundled with emoedge, whose voice runs Whisper base\'s '
        'first blocks (ONNX; ~14 ms an inference on one x86 core); "lite" = the small '
        "student (0.3 M weights, well under 1 ms; ONNX, OpenVINO and TFLite), for the smallest "
        "boards, with a weaker voice above all on speech unlike its training corpora; or the "
        "path of an exported artifact (its folder, manifest.json or model file; the manifest "
        "beside it says how to feed it).",
    )
    backend: str = setting(
        "auto",
        choices=("auto", *BACKENDS),
        help="auto (from the model file) or a runtime backend by name.",
    )
    threads: int = setting(1, low=1, high=64, help="Threads for inference and face detection.")
    providers: tuple[str, ...] = setting(
        ("CPUExecutionProvider",),
        check=lambda v: bool(v) and all(v),
        rule='a non-empty list of ONNX Runtime provider names, e.g. ["CPUExecutionProvider"]',
        help="ONNX Runtime's execution providers, in order of preference.\nFor example on a "
        "Jetson:\n"
        '    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", '
        '"CPUExecutionProvider"]',
    )
    voice_statistics: str = setting(
        "auto",
        check=bool,
        rule='"auto", "off" or a file path',
        help="Where a model whose voice adapts to the speech it hears (the default model) keeps "
        'that speech\'s statistics, so that a restart continues from them: "auto" = '
        "$STATE_DIRECTORY/voice-statistics.npz when systemd runs the daemon (/var/lib/emoedge), "
        'kept in memory only otherwise; "off" = never kept (each start begins from the '
        "model's training statistics); or a file path. `set/reset_voice` starts afresh.",
    )


@dataclass(frozen=True)
class SmoothingConfig:
    """Temporal smoothing of the probabilities: an EMA with `alpha` or a moving window."""

    method: str = setting(
        "ema",
        choices=SMOOTHING,
        help="ema (exponential moving average) or window (mean of the last `window`).",
    )
    alpha: float = setting(
        0.4, low=0, high=1, low_open=True, help="ema: the weight of the newest probabilities."
    )
    window: int = setting(5, low=1, high=1000, help="window: how many cycles are averaged.")


@dataclass(frozen=True)
class EventConfig:
    """A new emotion is reported once it holds `hold_s` above `threshold`; state heartbeat."""

    threshold: float = setting(
        0.4,
        low=0.0,
        high=1.0,
        help="A new emotion is reported once it has held for hold_s with a smoothed "
        "confidence of at least this.",
    )
    hold_s: float = setting(
        1.0,
        low=0.0,
        high=3600.0,
        unit=" seconds",
        help="How long a new emotion must hold before it is reported (no flicker).",
    )
    heartbeat_s: float = setting(
        30.0,
        low=0.1,
        high=86400.0,
        unit=" seconds",
        help="The state is published at least this often, also when nothing changed (the "
        "deprecated mqtt.heartbeat_s is read as this key).",
    )


@dataclass(frozen=True)
class DetectorConfig:
    """Face detector; faces smaller than `min_size` (fraction of the frame's short side) are
    ignored. Detect-then-track: the detector runs once `interval_s` has passed since its last
    run; in between the last box is reused while its crop differs from the crop taken at the
    detection by at most `max_drift` (mean absolute difference of the gray crop, as a fraction
    of full scale). Beyond that the box is moved to where that crop matches best (OpenCV
    template matching), and the detector runs at once if even the moved box's crop differs by
    more. `interval_s = 0` detects on every cycle."""

    kind: str = setting(
        "blazeface",
        choices=DETECTORS,
        help="blazeface (bundled, LiteRT) or haar (OpenCV 4.x with the opencv-data cascades).",
    )
    reach: str = setting(
        "auto",
        choices=("short", "full", "auto"),
        help="BlazeFace's model: short-range (faces at least about a ninth of the frame's "
        "width: within about 1.2 m of a 62-degree camera), full-range (down to about an "
        "eighteenth: 2.4 m) or auto (short-range; full-range where that finds no face, or only "
        "faces narrower than a sixth of the frame, which it boxes too wide).",
    )
    min_size: float = setting(
        0.08,
        low=0.0,
        high=1.0,
        unit=" (fraction of the frame)",
        help="Faces smaller than this fraction of the frame's short side are ignored.",
    )
    score_threshold: float = setting(
        0.5, low=0.0, high=1.0, help="Detections scoring below this are ignored."
    )
    interval_s: float = setting(
        1.0,
        low=0.0,
        high=3600.0,
        unit=" seconds",
        help="Detect-then-track: the detector runs when this long has passed since its last "
        "run (0 = on every cycle); in between the last face box is reused. A face that appears "
        "is found within interval_s.",
    )
    max_drift: float = setting(
        0.06,
        low=0.0,
        high=1.0,
        unit=" (fraction of full scale)",
        help="The detector runs at once when the face crop has changed by more than this (mean "
        "absolute difference of the gray crop): the face moved or left.",
    )
    level: bool = setting(
        True,
        help="Turn each face upright by the line through its eyes before it is cut out: a "
        "tilted head gives the model the upright face it learnt from. BlazeFace finds the eyes "
        "(Haar does not: its faces are cut as boxed); needs OpenCV.",
    )


def _backend_options() -> dict[str, type]:
    """Each backend's options dataclass by name."""
    return {name: BACKENDS.get(name).Options for name in BACKENDS}


@dataclass(frozen=True)
class Config:
    """Everything the daemon needs, validated. `backend` holds the options given in each
    `[backend.<name>]` table (typed by that backend's Options), passed to it when it loads."""

    device_id: str = setting(
        "emoedge",
        check=lambda v: bool(DEVICE_ID.match(v)),
        rule="1..64 characters of A-Z, a-z, 0-9, _ and - (it becomes an MQTT topic level)",
        help="Names this device in MQTT topics: <prefix>/<device_id>/...",
    )
    camera: CameraConfig = section(CameraConfig)
    microphone: MicConfig = section(MicConfig)
    model: ModelConfig = section(ModelConfig)
    backend: Mapping[str, Mapping[str, Any]] = setting(
        {},
        tables=_backend_options,
        refused={f.name: f"set model.{f.name} instead" for f in fields(ModelConfig)},
        help="Options of one runtime backend, used when that backend runs (threads and "
        "providers are set in [model]).",
    )
    inference_hz: float = setting(
        10.0,
        low=0.01,
        high=120.0,
        unit=" cycles/s",
        at="rates.inference_hz",
        help="Inference cycles per second (each takes the newest frame and the audio window "
        "ending at it).",
    )
    smoothing: SmoothingConfig = section(SmoothingConfig)
    events: EventConfig = section(EventConfig)
    detector: DetectorConfig = section(DetectorConfig)
    fusion: FusionConfig = section(FusionConfig)
    frame_queue: int = setting(
        4,
        low=1,
        high=1024,
        at="queues.frames",
        help="Frames waiting for inference; when full the oldest is dropped (and counted).",
    )
    max_audio_wait_s: float = setting(
        0.25,
        low=0.0,
        high=5.0,
        unit=" seconds",
        at="queues.max_audio_wait_s",
        help="How long a cycle waits for audio to catch up with its frame before reading silence.",
    )
    stats_interval_s: float = setting(
        60.0,
        low=1.0,
        high=86400.0,
        unit=" s",
        at="stats.interval_s",
        help="Statistics are logged and published on <prefix>/<device_id>/stats this often.",
    )
    mqtt: MqttConfig = section(MqttConfig)

    def checked(self, table: dict[str, Any], key: str) -> Config:
        """Report a configuration with nothing to analyse; one state heartbeat."""
        if self.camera.source == "none" and self.microphone.source == "none":
            report(
                "camera.source: 'none' together with microphone.source 'none' leaves nothing "
                "to analyse; allowed: at least one real source"
            )
        return self._one_heartbeat(table)

    def _one_heartbeat(self, table: dict[str, Any]) -> Config:
        """events.heartbeat_s is the state heartbeat; the deprecated mqtt.heartbeat_s stands in
        for it when it is not given, and the publisher re-sends the retained state only after
        STATE_RESEND_HEARTBEATS of them without a state."""
        events = self.events
        if "heartbeat_s" in _table(table, "mqtt"):
            if "heartbeat_s" in _table(table, "events"):
                log.warning("mqtt.heartbeat_s is deprecated and ignored: events.heartbeat_s is "
                            "set; remove mqtt.heartbeat_s")  # fmt: skip
            else:
                log.warning("mqtt.heartbeat_s is deprecated: rename it to events.heartbeat_s "
                            "(read as that key for now)")  # fmt: skip
                events = replace(events, heartbeat_s=self.mqtt.heartbeat_s)
        resend_s = STATE_RESEND_HEARTBEATS * events.heartbeat_s
        return replace(self, events=events, mqtt=replace(self.mqtt, heartbeat_s=resend_s))


def _table(document: dict[str, Any], name: str) -> dict[str, Any]:
    """The document's table `name` ({} when absent or not a table)."""
    table = document.get(name)
    return table if isinstance(table, dict) else {}


def template() -> str:
    """The commented configuration template (edge/templates/config.toml): every key with its
    help, what it allows and its default."""
    return render(Config, HEADER)


def parse_config(data: dict[str, Any]) -> Config:
    """Validate a parsed TOML document into a Config; one ConfigError lists every problem."""
    with collected():
        config = read_table(Config, data, "")
    return config


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
         config.model.artifact not in BUNDLED_MODELS),
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
            config = read_table(Config, data, "")
            check_files(config)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    return config
