"""Build the configured camera and microphone sources."""

from __future__ import annotations

from edge.capture import Camera, Microphone, ReplayClock
from edge.capture.camera import FileCamera, OpenCVCamera, Picamera2Camera
from edge.capture.microphone import FileMicrophone, PyAudioMicrophone
from edge.core.config import CameraConfig, MicConfig


def make_camera(cfg: CameraConfig, clock: ReplayClock) -> Camera | None:
    """The camera source named by `camera.source`; None for 'none'."""
    if cfg.source == "picamera2":
        return Picamera2Camera(cfg)
    if cfg.source == "opencv":
        return OpenCVCamera(cfg)
    if cfg.source == "file":
        return FileCamera(cfg.path, clock, cfg.loop)
    return None


def make_microphone(cfg: MicConfig, clock: ReplayClock) -> Microphone | None:
    """The microphone source named by `microphone.source`; None for 'none'."""
    if cfg.source == "pyaudio":
        return PyAudioMicrophone(cfg)
    if cfg.source == "file":
        return FileMicrophone(cfg, clock)
    return None
