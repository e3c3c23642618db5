"""A stand-in for the `picamera2` package (Raspberry Pi camera), for tests on machines
without the camera. It implements the documented calls the daemon uses:

    cam = Picamera2()
    config = cam.create_video_configuration(main={"size": (w, h), "format": "RGB888"},
                                            lores={"size": (lw, lh), "format": "YUV420"})
    cam.configure(config); cam.start()
    array = cam.capture_array("lores")   # YUV420: (lh * 3 // 2, lw) uint8, luma first
    cam.stop(); cam.close()

The scene is the RGB image in the .npy file named by $FAKE_PICAMERA2_IMAGE (a gray ramp
without it). $FAKE_PICAMERA2_ABSENT=1 behaves like a Pi without a camera (IndexError, as
picamera2 raises when libcamera lists no camera). Every call is appended to `CALLS`.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

CALLS: list[tuple[str, Any]] = []


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    ys = (np.arange(h) * image.shape[0] / h).astype(int)
    xs = (np.arange(w) * image.shape[1] / w).astype(int)
    return image[ys][:, xs]


class Picamera2:
    def __init__(self, camera_num: int = 0) -> None:
        if os.environ.get("FAKE_PICAMERA2_ABSENT") == "1":
            raise IndexError("list index out of range")
        path = os.environ.get("FAKE_PICAMERA2_IMAGE")
        if path:
            self.scene = np.load(path)
        else:
            self.scene = np.repeat(np.linspace(0, 255, 640, dtype=np.uint8)[None], 480, 0)
            self.scene = np.repeat(self.scene[..., None], 3, axis=2)
        self.config: dict[str, Any] | None = None
        self.started = False
        self._next = 0.0
        CALLS.append(("Picamera2", camera_num))

    def create_video_configuration(
        self, main: dict | None = None, lores: dict | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        CALLS.append(("create_video_configuration", {"main": main, "lores": lores, **kwargs}))
        return {"main": main or {"size": (1280, 720), "format": "XBGR8888"}, "lores": lores,
                "controls": kwargs.get("controls", {})}  # fmt: skip

    def configure(self, config: dict[str, Any]) -> None:
        lores, main = config.get("lores"), config["main"]
        if lores and (lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]):
            raise RuntimeError("lores stream must not be larger than main")
        CALLS.append(("configure", config))
        self.config = config

    def start(self) -> None:
        if self.config is None:
            raise RuntimeError("Camera must be configured before start")
        CALLS.append(("start", None))
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        if not self.started:
            raise RuntimeError("Camera must be started before capture")
        fps = float(self.config.get("controls", {}).get("FrameRate", 30.0))
        self._next = max(self._next + 1.0 / fps, time.monotonic())
        time.sleep(max(0.0, self._next - time.monotonic()))
        stream = self.config[name]
        rgb = _resize(self.scene, stream["size"])
        if stream["format"] == "YUV420":
            luma = rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            y = np.clip(luma + 0.5, 0, 255).astype(np.uint8)
            h, w = y.shape
            chroma = np.full((h // 2, w), 128, np.uint8)  # U then V planes, quarter size each
            return np.concatenate([y, chroma], axis=0)
        return np.ascontiguousarray(rgb[..., ::-1])  # "RGB888" is stored B, G, R

    def stop(self) -> None:
        CALLS.append(("stop", None))
        self.started = False

    def close(self) -> None:
        CALLS.append(("close", None))
