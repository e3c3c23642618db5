"""`emoedge run`, `emoedge config check|template` and `emoedge demo` (assembled by
edge.daemon.wiring).

Module top level stays light: runtimes, OpenCV and paho load when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge.cli import Command
from edge.core.config import (
    CameraConfig,
    Config,
    EventConfig,
    MicConfig,
    ModelConfig,
    load_config,
    template,
)
from edge.core.errors import UsageError

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "sample"
SAMPLE_VIDEO, SAMPLE_AUDIO = SAMPLE / "sample.avi", SAMPLE / "sample.flac"
CREMA_D = Path(__file__).resolve().parents[1] / "assets" / "crema-d"
# The demo's recordings (video, audio): a synthetic pan over a portrait with synthesised speech
# (assets/sample), or a real actor's face and voice together (assets/crema-d, with attribution).
SAMPLES = {
    "portrait": (SAMPLE_VIDEO, SAMPLE_AUDIO),
    "crema-d": (CREMA_D / "1001_DFA_ANG_XX.flv", CREMA_D / "1001_DFA_ANG_XX.wav"),
}


# -- emoedge run ------------------------------------------------------------------------------


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, metavar="FILE",
                        help="TOML configuration (see edge/templates/config.toml)")  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    from edge.daemon.wiring import run_daemon

    run_daemon(load_config(args.config))
    return 0


RUN = Command(
    help="run the daemon: camera + microphone → emotions → MQTT",
    configure=_configure_run,
    run=_run,
)


# -- emoedge config check -------------------------------------------------------------------


def _configure_config(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a configuration file without starting")
    check.add_argument("file", type=Path, metavar="FILE")
    sub.add_parser("template", help="print the commented template: every key and its default")


def _config(args: argparse.Namespace) -> int:
    if args.action == "template":
        print(template(), end="")
        return 0
    config = load_config(args.file)
    camera = config.camera
    source = camera.path if camera.source == "file" else camera.device
    mic = config.microphone
    print(
        f"{args.file}: ok\n"
        f"  device_id   {config.device_id}\n"
        f"  camera      {camera.source} {source if camera.source != 'none' else ''}\n"
        f"  microphone  {mic.source} {mic.path or (mic.device if mic.device is not None else '')}\n"
        f"  model       {config.model.artifact} ({config.model.backend})\n"
        f"  inference   {config.inference_hz} Hz, detector {config.detector.kind}\n"
        f"  mqtt        {config.mqtt.url} prefix {config.mqtt.prefix}"
    )
    return 0


CONFIG = Command(
    help="check a daemon configuration file, or print its template",
    configure=_configure_config,
    run=_config,
)


# -- emoedge demo ---------------------------------------------------------------------------


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--camera", action="store_true", help="use camera 0 instead of the sample video"
    )
    parser.add_argument(
        "--mic", action="store_true", help="use the default microphone instead of the sample audio"
    )
    parser.add_argument(
        "--sample",
        choices=SAMPLES,
        default="portrait",
        help="the bundled recording: portrait (a pan over a portrait, synthesised speech; default) "
        "or crema-d (a real actor's face and voice, CREMA-D, ODbL/DbCL: see "
        "edge/assets/crema-d/PROVENANCE.md)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        metavar="N",
        help="run N seconds (the sample loops); default: the sample once, or 30 s live",
    )
    parser.add_argument(
        "--model",
        default="default",
        metavar="PATH",
        help='a bundled model ("default", "lite") or an exported artifact',
    )
    parser.add_argument(
        "--broker", metavar="URL", help="publish to this broker instead of an embedded mosquitto"
    )


def demo_config(args: argparse.Namespace, broker_url: str) -> Config:
    """The demo's configuration: the bundled sample (or real devices) and the default model."""
    from edge.mqtt.config import parse_mqtt_config

    loop = args.seconds is not None
    video, audio = SAMPLES[args.sample]
    camera = CameraConfig(source="opencv", device=0) if args.camera else CameraConfig(
        source="file", path=str(video), loop=loop
    )  # fmt: skip
    microphone = MicConfig(source="pyaudio") if args.mic else MicConfig(
        source="file", path=str(audio), loop=loop
    )  # fmt: skip
    return Config(
        device_id="demo",
        camera=camera,
        microphone=microphone,
        model=ModelConfig(artifact=args.model),
        events=EventConfig(threshold=0.3, hold_s=0.5, heartbeat_s=5.0),
        stats_interval_s=5.0,
        mqtt=parse_mqtt_config({"url": broker_url, "discovery": False}),
    )


def _print_message(message: Any) -> None:
    if message.kind == "events":
        e = message.event
        change = f"{e.previous or 'absent'} → {e.current or 'absent'}"
        print(f"  event  {change}  ({e.confidence:.2f}; before: {e.previous_duration_s:.1f} s)")
    elif message.kind == "state":
        s = message.state
        seen = "+".join(m for m, on in (("face", s.face), ("voice", s.audio)) if on) or "nothing"
        label = s.label or s.state
        own = " ".join(
            f"{name} says {p['label']} {p['confidence']:.2f};"
            for name, p in s.by_modality.items()
            if p is not None
        )
        print(f"  state  {label:<9} {s.confidence:.2f}  sees {seen}  {own}".rstrip(" ;"))
    sys.stdout.flush()


def _demo(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from edge.daemon.wiring import run_daemon
    from edge.mqtt.client import subscribe
    from edge.mqtt.embedded_broker import EmbeddedBroker

    if args.seconds is not None and args.seconds <= 0:
        raise UsageError(f"--seconds must be > 0, got {args.seconds}")
    seconds = args.seconds or (30.0 if args.camera else None)
    with ExitStack() as stack:
        url = args.broker or stack.enter_context(EmbeddedBroker()).url
        config = demo_config(args, url)
        print(f"emoedge demo: broker {url}, topics {config.mqtt.prefix}/{config.device_id}/#")
        sub = subscribe(url, config.device_id, kinds=("state", "events"), callback=_print_message)
        stack.callback(sub.close)
        summary = run_daemon(config, seconds)
    print(
        f"emoedge demo: {summary.cycles} cycles, {summary.events} events, "
        f"{summary.states} states, mean latency {summary.mean_latency_ms:.1f} ms per cycle"
    )
    return 0


DEMO = Command(
    help="the whole loop on a bundled sample: model, embedded MQTT broker, live subscriber",
    configure=_configure_demo,
    run=_demo,
)
