"""One real pass of the device pipeline, run by scripts/check-arm64.sh on x86 and in the arm64 root.

Reads a frame with a face and the 3 s of speech that end at it from the bundled sample,
detects the face with BlazeFace (LiteRT; the full-range model too, on the same frame centred
on a wall four times its size, as a person four times as far away) and runs every artifact of
the bundled models (default and lite) that a runtime of the `edge` extra reads (.onnx through
ONNX Runtime, .tflite through LiteRT) on face + voice, each fed by its own manifest's front
end. Uses only `edge`.

  --save REF.npz       keep the inputs and probabilities (the x86 reference run)
  --reference REF.npz  compare with them: inputs, and probabilities both on this machine's
                       inputs (end to end) and on the reference inputs (the runtime alone);
                       exit 1 when, on the reference inputs, a probability differs by more
                       than --tolerance, when end to end a label differs, or when the far
                       face's box moves by more than FAR_BOX_PX. (End to end, the
                       detector's box may move by a fraction of a pixel between the two
                       machines; an int8 model's input quantisation can turn that into a few
                       hundredths of probability, so there only the label is held to.)
  --port P             publish the result once (QoS 1, through edge.mqtt.publisher's client,
                       MQTT 5) to the broker at --host:P
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

import cv2
import numpy as np
import soundfile

from edge.audio.frontend import resample, to_mono_float, window_features
from edge.backends import BACKENDS, BUNDLES, bundled_manifests, load_artifact
from edge.core.config import DetectorConfig
from edge.core.errors import EmoedgeError
from edge.core.manifest import BUNDLED_MODELS, Manifest
from edge.mqtt.config import MqttConfig
from edge.mqtt.publisher import connect, new_client
from edge.vision.detect import Detection, largest_face, load_detector
from edge.vision.face import crop_face

FRAME_S = 5.0  # the sample has a face in view and speech in the 3 s before this time
SAMPLE = files("edge") / "assets" / "sample"
FAR = 4  # the far face: the frame centred on a wall this many times its size
FAR_BOX_PX = 2.0  # how far its box may move between machines
EDGE_RUNTIMES = ("onnxruntime", "litert")  # what the `edge` extra installs
PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert", "opencv-python-headless", "soundfile")

Inputs = tuple[np.ndarray, np.ndarray, np.ndarray]


def bundled_artifacts() -> dict[str, Path]:
    """The bundled models' artifact folders that an `edge` runtime reads, by "<model>.<name>",
    each model's preferred first."""
    readable = {suffix for name in EDGE_RUNTIMES for suffix in BACKENDS.get(name).file_types}
    return {
        f"{bundle}.{manifest.directory.name}": manifest.directory
        for bundle in BUNDLED_MODELS
        for manifest in bundled_manifests(bundle)
        if Path(manifest.model_file).suffix.lower() in readable
    }


def sample_frame() -> np.ndarray:
    """The bundled sample's RGB frame at FRAME_S."""
    video = cv2.VideoCapture(str(SAMPLE / "sample.avi"))
    video.set(cv2.CAP_PROP_POS_MSEC, FRAME_S * 1000)
    ok, bgr = video.read()
    if not ok:
        sys.exit("cannot read a frame of sample.avi")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def sample_face(rgb: np.ndarray) -> Detection:
    """The face BlazeFace finds in the sample's frame `rgb` (at FRAME_S)."""
    face = largest_face(load_detector(DetectorConfig()), rgb)
    if face is None:
        sys.exit("BlazeFace found no face in the sample frame")
    return face


def sample_inputs(
    manifest: Manifest, rgb: np.ndarray, face: Detection, sound: tuple[np.ndarray, int]
) -> Inputs:
    """The crop of `face` in the sample's frame `rgb` and the audio window of the sample's
    `sound` (wave, rate) that ends there (batch 1), as `manifest` says to feed its model."""
    wave = resample(to_mono_float(sound[0]), sound[1], manifest.audio.sample_rate)
    audio = window_features(wave[: int(FRAME_S * manifest.audio.sample_rate)], manifest.audio)
    face_input = crop_face(rgb, face.box, manifest.face, face.roll)
    return face_input[None], audio[None], np.ones((1, 2), np.float32)


def far_face_box(rgb: np.ndarray) -> list[float]:
    """The box BlazeFace's full-range model gives the face of `rgb` centred on a plain wall
    four times its size (the short-range model finds none there)."""
    h, w = rgb.shape[:2]
    wall = np.full((FAR * h, FAR * w, 3), 110, np.uint8)
    y, x = (FAR * h - h) // 2, (FAR * w - w) // 2
    wall[y : y + h, x : x + w] = rgb
    face = largest_face(load_detector(DetectorConfig(reach="full")), wall)
    if face is None:
        sys.exit(f"BlazeFace full-range found no face in the sample frame {FAR} times as far")
    return [round(float(v), 2) for v in face.box]


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


INPUT_NAMES = ("face", "audio", "mask")


def compare(
    reference: np.lib.npyio.NpzFile,
    inputs: dict[str, Inputs],
    runners: dict,
    probs: dict,
    tolerance: float,
    far_box: list[float],
) -> tuple[dict, list[str]]:
    """Differences to the reference run, and the ones beyond tolerance."""
    report: dict = {
        "far_face_box_max_abs_diff_px": _max_diff(np.array(far_box), reference["far_box"]),
        "tolerance": tolerance,
    }
    failures = []
    if report["far_face_box_max_abs_diff_px"] > FAR_BOX_PX:
        failures.append(f"the far face's box moved by more than {FAR_BOX_PX} px")
    for name, runner in runners.items():
        if name not in reference:
            failures.append(f"{name}: no reference probabilities")
            continue
        ref = reference[name]
        ref_inputs = tuple(reference[f"{name}.{part}"] for part in INPUT_NAMES)
        same_input = _max_diff(runner.predict(*ref_inputs)[0], ref)
        report[name] = {
            "face_input_max_abs_diff": _max_diff(inputs[name][0], ref_inputs[0]),
            "audio_input_max_abs_diff": _max_diff(inputs[name][1], ref_inputs[1]),
            "max_abs_diff_same_input": same_input,
            "max_abs_diff_end_to_end": _max_diff(probs[name], ref),
            "reference_label": runner.manifest.labels[int(np.argmax(ref))],
        }
        if same_input > tolerance:
            failures.append(
                f"{name}: on the same input, probabilities differ by {same_input:.4f} > {tolerance}"
            )
        if int(np.argmax(ref)) != int(np.argmax(probs[name])):
            failures.append(f"{name}: label differs from the reference")
    return report, failures


def main() -> None:
    try:
        run()
    except EmoedgeError as error:
        sys.exit(f"arm64_smoke: {error}")


def publish(host: str, port: int, topic: str, payload: str) -> None:
    """One QoS 1 publish, acknowledged by the broker, with the daemon's client set-up."""
    config = MqttConfig(host=host, port=port)
    client = new_client(config, "emoedge-check-arm64")
    connect(client, config, first=True)
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(timeout=60)
    finally:
        client.disconnect()
        client.loop_stop()


def run() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="one exported artifact folder instead of the bundled ones")
    parser.add_argument("--save", type=Path, help="write inputs and probabilities to this .npz")
    parser.add_argument("--reference", type=Path, help="a --save file to compare with")
    parser.add_argument(
        "--tolerance", type=float, default=0.02,
        help="max probability difference on the reference inputs",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="publish the result to this MQTT broker port")
    parser.add_argument("--topic", default="emoedge/check-arm64/result")
    args = parser.parse_args()

    folders = {Path(args.model).name: Path(args.model)} if args.model else bundled_artifacts()
    if not folders:
        sys.exit(f"arm64_smoke: no ONNX or TFLite artifact under {BUNDLES}")
    runners = {name: load_artifact(folder) for name, folder in folders.items()}
    rgb = sample_frame()
    face = sample_face(rgb)
    box = [round(float(v), 2) for v in face.box]
    sound = soundfile.read(str(SAMPLE / "sample.flac"), dtype="float32")
    inputs = {name: sample_inputs(r.manifest, rgb, face, sound) for name, r in runners.items()}
    far_box = far_face_box(rgb)
    probs = {name: runner.predict(*inputs[name])[0] for name, runner in runners.items()}
    result: dict = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in PACKAGES},
        "face_box": box,
        "far_face_box": far_box,
        "results": {
            name: {
                "runtime": runner.name,
                "model": runner.manifest.model_id,
                "label": runner.manifest.labels[int(np.argmax(probs[name]))],
                "probabilities": {
                    label: round(float(p), 4)
                    for label, p in zip(runner.manifest.labels, probs[name], strict=True)
                },
            }
            for name, runner in runners.items()
        },
    }
    failures: list[str] = []
    if args.reference:
        with np.load(args.reference) as reference:
            result["compared_to"] = str(reference["machine"])
            result["diff"], failures = compare(
                reference, inputs, runners, probs, args.tolerance, far_box
            )
    if args.save:
        saved = {
            f"{name}.{part}": array
            for name, arrays in inputs.items()
            for part, array in zip(INPUT_NAMES, arrays, strict=True)
        }
        np.savez(args.save, far_box=np.array(far_box), machine=platform.machine(), **saved, **probs)
    print(json.dumps(result, indent=2))
    if args.port:
        publish(args.host, args.port, args.topic, json.dumps(result))
        print(f"published to mqtt://{args.host}:{args.port}/{args.topic}")
    if failures:
        sys.exit("differs from the reference: " + "; ".join(failures))


if __name__ == "__main__":
    main()
