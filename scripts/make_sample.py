"""Regenerate the bundled demo sample in edge/assets/sample/ (run once; the result is committed).

Needs scikit-image (for the public-domain NASA astronaut portrait), espeak-ng (speech),
opencv and soundfile. Neither is a dependency of the package:

    .venv/bin/pip install scikit-image && apt install espeak-ng
    .venv/bin/python scripts/make_sample.py

Timeline (13 s): the face is in view for the first 6 s, then the camera looks away;
speech runs from 2.5 s to about 8 s. So the daemon sees face-only, fused, voice-only and
absent spells (the 3 s audio window lags the speech by up to its length).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import soundfile
from skimage import data

from edge.audio.frontend import resample, to_mono_float

OUT = Path(__file__).resolve().parents[1] / "edge" / "assets" / "sample"
FPS = 10
SECONDS = 13.0
FACE_UNTIL_S = 6.0
SPEECH_AT_S = 2.5
SIZE = (224, 168)  # width, height
RATE = 16000
TEXT = "Hello. This is a short demo of emotion recognition. I can see a face, and hear a voice."


def frames() -> list[np.ndarray]:
    """RGB frames: a slow pan and zoom over the portrait, then a face-free part of the image."""
    image = data.astronaut()  # 512×512 RGB, NASA, public domain
    out = []
    for i in range(int(SECONDS * FPS)):
        t = i / FPS
        if t < FACE_UNTIL_S:
            zoom = 1.0 + 0.08 * np.sin(2 * np.pi * t / FACE_UNTIL_S)
            w, h = int(300 / zoom), int(225 / zoom)
            cx, cy = 215 + 12 * np.sin(t), 150 + 6 * np.cos(0.7 * t)
        else:  # the lower right: suit and backdrop, no face
            w, h = 240, 180
            cx, cy = 390 + 4 * np.sin(t), 400
        x0, y0 = int(cx - w / 2), int(cy - h / 2)
        crop = image[y0 : y0 + h, x0 : x0 + w]
        out.append(cv2.resize(crop, SIZE, interpolation=cv2.INTER_AREA))
    return out


def speech() -> np.ndarray:
    """Synthesised speech placed at SPEECH_AT_S in SECONDS of silence, 16 kHz mono."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(wav), TEXT], check=True)
        voice, rate = soundfile.read(wav, dtype="int16")
    voice = resample(to_mono_float(voice), rate, RATE) * 0.8
    track = np.zeros(int(SECONDS * RATE), np.float32)
    start = int(SPEECH_AT_S * RATE)
    track[start : start + len(voice)] = voice[: len(track) - start]
    return track


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(OUT / "sample.avi"), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    for frame in frames():
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    soundfile.write(OUT / "sample.flac", speech(), RATE, subtype="PCM_16")
    for path in sorted(OUT.iterdir()):
        print(f"{path.relative_to(OUT.parents[2])}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
