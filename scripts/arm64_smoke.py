"""Run inside the arm64 root by scripts/check-arm64.sh: one real pass of the device pipeline.

Reads a frame with a face and the 3 s of speech that end at it from the bundled sample,
detects the face with BlazeFace (LiteRT), runs the bundled default model (ONNX Runtime) on
face + voice, and publishes the result once to an MQTT broker (paho). Uses only `edge`.
"""

from __future__ import annotations

import argparse
import json
import platform
from importlib.resources import files
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.publish
import soundfile

from edge.audio import resample, to_mono_float, window_features
from edge.backends import Runner, default_artifact, load_artifact
from edge.config import DetectorConfig
from edge.detect import largest_face, load_detector
from edge.face import crop_face

FRAME_S = 5.0  # the sample has a face in view and speech in the 3 s before this time


def sample_inputs(runner: Runner) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face crop and audio window at FRAME_S of the bundled sample, batch 1, both present."""
    sample = files("edge") / "assets" / "sample"
    video = cv2.VideoCapture(str(sample / "sample.avi"))
    video.set(cv2.CAP_PROP_POS_MSEC, FRAME_S * 1000)
    ok, bgr = video.read()
    if not ok:
        raise SystemExit("cannot read a frame of sample.avi")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    face = largest_face(load_detector(DetectorConfig()), rgb)
    if face is None:
        raise SystemExit("BlazeFace found no face in the sample frame")
    audio_cfg = runner.manifest.audio
    wave, rate = soundfile.read(str(sample / "sample.flac"), dtype="float32")
    wave = resample(to_mono_float(wave), rate, audio_cfg.sample_rate)
    end = int(FRAME_S * audio_cfg.sample_rate)
    audio = window_features(wave[:end], audio_cfg)
    face_input = crop_face(rgb, face.box, runner.manifest.face)
    return face_input[None], audio[None], np.ones((1, 2), np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", default="emoedge/check-arm64/result")
    parser.add_argument("--model", help="an exported ONNX artifact (default: the bundled one)")
    args = parser.parse_args()

    artifact = Path(args.model) if args.model else default_artifact("onnxruntime")
    runner = load_artifact(artifact, "onnxruntime")
    probabilities = runner.predict(*sample_inputs(runner))[0]
    best = int(np.argmax(probabilities))
    result = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "model": runner.manifest.model_id,
        "artifact": artifact.name,
        "label": runner.manifest.labels[best],
        "probabilities": {
            label: round(float(p), 4)
            for label, p in zip(runner.manifest.labels, probabilities, strict=True)
        },
    }
    print(json.dumps(result, indent=2))
    paho.mqtt.publish.single(
        args.topic, json.dumps(result), qos=1, hostname=args.host, port=args.port
    )
    print(f"published to mqtt://{args.host}:{args.port}/{args.topic}")


if __name__ == "__main__":
    main()
