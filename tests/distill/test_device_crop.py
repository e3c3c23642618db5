"""Faces as the device sees them: a face put into a larger frame, found by the device's
detector and cropped with the model's framing; `emoedge evaluate --device-crop`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edge
from distill.avclips import frame_at
from distill.cache import device_detector, device_face
from distill.checkpoint import front_end, load_checkpoint
from distill.device_crop import (
    NO_EFFECTS,
    FrameEffects,
    detector_boxes,
    device_crops,
    implied_framing,
    in_a_frame,
)
from edge.core.config import DetectorConfig
from edge.vision.face import FaceConfig
from tests.fixtures_export import run_emoedge
from tests.tiny_corpora import Corpora

CLIP = Path(edge.__file__).parent / "assets" / "crema-d" / "1001_DFA_ANG_XX.flv"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return frame_at(CLIP, 1.0)  # a real person, 480×360


@pytest.mark.parametrize("framing", [FaceConfig(), FaceConfig(margin=0.3, lift=0.0)])
def test_a_face_cut_with_a_framing_gives_that_framing_back(
    frame: np.ndarray, framing: FaceConfig
) -> None:
    detector = device_detector()
    face = device_face(frame, detector, framing)
    assert face is not None
    boxes = detector_boxes(face[None], detector)
    implied = implied_framing(boxes, framing.size)
    assert implied["faces"] == 1
    assert abs(implied["margin"] - framing.margin) < 0.05, implied
    assert abs(implied["lift"] - framing.lift) < 0.05, implied
    # re-cut with the same framing, it is the same face: far closer to it than a crop of the
    # frame 0.1 wider and 0.1 higher
    again = device_crops(face[None], boxes, framing)[0]
    other = FaceConfig(margin=framing.margin + 0.1, lift=framing.lift + 0.1)
    elsewhere = device_face(frame, detector, other)
    distance = {
        k: np.mean(np.abs(v.astype(int) - face))
        for k, v in (("again", again), ("elsewhere", elsewhere))
    }
    assert distance["again"] < 0.7 * distance["elsewhere"], distance


def test_sensor_noise_in_the_frame_hardly_reaches_the_crop(frame: np.ndarray) -> None:
    """Noise of 8 gray levels in each pixel of the frame, seeded per face, is averaged away by
    the device's 4× shrink to about 2 levels in the crop; the detector still finds the face."""
    detector = device_detector()
    face = device_face(frame, detector)
    noise = FrameEffects(noise=8.0)
    clean, noisy = in_a_frame(face), in_a_frame(face, noise, seed=3)
    assert 7.0 < (noisy.astype(float) - clean).std() < 9.0
    np.testing.assert_array_equal(noisy, in_a_frame(face, noise, seed=3))
    assert not np.isnan(detector_boxes(face[None], detector, noise)).any()
    boxes = detector_boxes(face[None], detector)  # the same box: only the noise differs
    crops = [device_crops(face[None], boxes, FaceConfig(), e)[0] for e in (NO_EFFECTS, noise)]
    assert (crops[1].astype(float) - crops[0]).std() < 8.0 / 3


@pytest.mark.parametrize("tilt", [15.0, 30.0])
def test_a_tilted_head_is_cut_upright(frame: np.ndarray, tilt: float) -> None:
    """The face tilted in its frame (clockwise for face 0, counter-clockwise for face 1) is
    found with about that roll and levelled: its crop is at least 30 % closer to the upright
    face's crop than the crop of the tilted box without levelling (about 55 % at 15°, 35 % at
    30°, where the tilted face's box and the turn's interpolation differ more)."""
    detector = device_detector()
    face = device_face(frame, detector)
    upright = device_crops(face[None], detector_boxes(face[None], detector), FaceConfig())[0]
    faces = np.stack([face, face])
    effects = FrameEffects(tilt=tilt)
    boxes = detector_boxes(faces, detector, effects)
    base = detector_boxes(face[None], detector)[0, 4]
    assert boxes[0, 4] - base == pytest.approx(tilt, abs=6)
    assert boxes[1, 4] - base == pytest.approx(-tilt, abs=6)
    levelled = device_crops(faces, boxes, FaceConfig(), effects).astype(float)
    boxes[:, 4] = 0.0
    as_boxed = device_crops(faces, boxes, FaceConfig(), effects).astype(float)
    for i in range(2):
        near, far = np.abs(levelled[i] - upright).mean(), np.abs(as_boxed[i] - upright).mean()
        assert near < 0.7 * far, (i, near, far)


def test_evaluate_scores_the_faces_through_the_device_crop(
    frame: np.ndarray, tiny_corpora: Corpora, tmp_path
) -> None:
    from PIL import Image

    root = tmp_path / "faces"
    (root / "angry").mkdir(parents=True)
    Image.fromarray(device_face(frame, device_detector())).save(root / "angry" / "actor.png")
    Image.fromarray(np.full((48, 48), 90, np.uint8)).save(root / "angry" / "wall.png")
    out = tmp_path / "m.json"
    args = ["--faces", root, "--speech", tiny_corpora.emodb, "--cache-dir", tiny_corpora.cache]
    model = "distill/checkpoints/student.pt"
    assert run_emoedge("evaluate", model, *args, "--device-crop", "--json", out) == 0
    result = json.loads(out.read_text())
    row = result["metrics"]["face_only_device_crop"]
    assert row["n"] == 1 and row["excluded"] == {"no_face_found": 1}
    assert result["metrics"]["face_only"]["n"] == 2
    crop = result["device_crop"]
    face = front_end(load_checkpoint(model)[1])[1]
    assert crop["model_framing"] == {"margin": face.margin, "lift": face.lift}
    assert crop["implied_framing"]["faces"] == 1
    assert crop["frame"] == {"noise": 0.0, "tilt": 0.0, "distance": 1.0}
    assert crop["reach"] == DetectorConfig().reach
    # --frame-noise implies the device's crop and is recorded with it, as is --reach
    flags = ["--frame-noise", "6", "--reach", "short"]
    assert run_emoedge("evaluate", model, *args, *flags, "--json", out) == 0
    result = json.loads(out.read_text())
    assert result["device_crop"]["frame"] == {"noise": 6.0, "tilt": 0.0, "distance": 1.0}
    assert result["device_crop"]["reach"] == "short"
    assert result["metrics"]["face_only_device_crop"]["n"] == 1


def test_a_face_farther_away_is_smaller_in_a_frame_of_the_same_size(frame: np.ndarray) -> None:
    """At three times the distance the face is a third as wide, centred on a plain wall; the
    full-range detector finds it there, and its box in the frame's pixels implies the same
    framing as the near face's."""
    detector = device_detector("full")
    face = device_face(frame, device_detector())
    near, far = in_a_frame(face), in_a_frame(face, FrameEffects(distance=3.0))
    assert far.shape == near.shape
    assert far[:60].std() == 0 and far[:, :60].std() == 0  # the wall
    boxes = detector_boxes(np.stack([face, face]), detector)
    far_boxes = detector_boxes(face[None], detector, FrameEffects(distance=3.0))
    assert far_boxes[0, 2] == pytest.approx(boxes[0, 2] / 3, rel=0.2)
    implied = implied_framing(far_boxes, face.shape[0], distance=3.0)
    near_margin = implied_framing(boxes, face.shape[0])["margin"]
    assert implied["margin"] == pytest.approx(near_margin, abs=0.1)


@pytest.mark.parametrize(
    "flag",
    [("--frame-noise", "-1"), ("--frame-tilt", "120"), ("--frame-distance", "0.5")],
)
def test_a_frame_effect_out_of_range_is_refused(tiny_corpora: Corpora, capsys, flag) -> None:
    args = ["--speech", tiny_corpora.emodb, "--cache-dir", tiny_corpora.cache]
    code = run_emoedge("evaluate", "distill/checkpoints/student.pt", *args, *flag)
    assert code == 2
    assert " ".join(flag) in capsys.readouterr().err


@pytest.mark.data
def test_on_fer2013_faces_both_detectors_imply_the_models_framing(shared_data) -> None:
    """The framing of a model (measured with BlazeFace) serves the Haar fallback too: its boxes,
    in BlazeFace's convention, imply nearly the same margin and lift on the same faces."""
    from distill.data import load_faces
    from edge.core.config import DetectorConfig
    from edge.core.errors import DeviceError
    from edge.vision.detect import load_detector

    try:
        haar = load_detector(DetectorConfig(kind="haar"))
    except DeviceError as error:
        pytest.skip(f"no Haar detector here: {error}")
    faces = load_faces(shared_data / "fer2013", "val").data[:400]
    implied = {
        kind: implied_framing(detector_boxes(faces, detector), 48)
        for kind, detector in (("haar", haar), ("blazeface", device_detector()))
    }
    for key in ("margin", "lift"):
        assert abs(implied["haar"][key] - implied["blazeface"][key]) < 0.03, implied
