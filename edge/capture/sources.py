"""The camera and microphone sources by name (`camera.source`, `microphone.source`).

Each registry maps a name to a factory `(cfg, clock) -> source`; "none" is no source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edge.capture import Camera, Microphone, ReplayClock
from edge.capture.camera import FileCamera, OpenCVCamera, Picamera2Camera
from edge.capture.microphone import FileMicrophone, PyAudioMicrophone
from edge.core.registry import Registry

if TYPE_CHECKING:  # annotations only, so that the config can import CAMERAS and MICROPHONES
    from edge.core.config import CameraConfig, MicConfig

CAMERAS: Registry[Callable[[CameraConfig, ReplayClock], Camera | None]] = Registry("camera source")
MICROPHONES: Registry[Callable[[MicConfig, ReplayClock], Microphone | None]] = Registry(
    "microphone source"
)


@CAMERAS.register("picamera2")
def _picamera2(cfg: CameraConfig, clock: ReplayClock) -> Camera:
    return Picamera2Camera(cfg)


@CAMERAS.register("opencv")
def _opencv(cfg: CameraConfig, clock: ReplayClock) -> Camera:
    return OpenCVCamera(cfg)


@CAMERAS.register("file")
def _video_file(cfg: CameraConfig, clock: ReplayClock) -> Camera:
    return FileCamera(cfg.path, clock, cfg.loop)


@MICROPHONES.register("pyaudio")
def _pyaudio(cfg: MicConfig, clock: ReplayClock) -> Microphone:
    return PyAudioMicrophone(cfg)


@MICROPHONES.register("file")
def _audio_file(cfg: MicConfig, clock: ReplayClock) -> Microphone:
    return FileMicrophone(cfg, clock)


@CAMERAS.register("none")
@MICROPHONES.register("none")
def _none(cfg: object, clock: ReplayClock) -> None:
    """No source of this kind."""
    return None


def make_camera(cfg: CameraConfig, clock: ReplayClock) -> Camera | None:
    """The camera source named by `camera.source`; None for 'none'."""
    return CAMERAS.get(cfg.source)(cfg, clock)


def make_microphone(cfg: MicConfig, clock: ReplayClock) -> Microphone | None:
    """The microphone source named by `microphone.source`; None for 'none'."""
    return MICROPHONES.get(cfg.source)(cfg, clock)
