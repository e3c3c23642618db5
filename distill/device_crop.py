"""Faces as the device would see them (`emoedge evaluate --device-crop`).

A model learns faces framed as its training crops are (FER2013: a tight crop with some
forehead); on the device the face is cut from a camera frame around the detector's box, with
the model's framing (FaceConfig's margin and lift). Here each evaluation face is put into a
larger frame (upscaled UPSCALE times, its edges replicated around it; optionally tilted, as a
head leans, farther from the camera, and with a camera's sensor noise, Gaussian, at the frame's
scale: FrameEffects),
found by the device's detector and cropped as the device crops it (levelled by the eyes, as the
detector's defaults do): the face rows scored that way say what the framing and the device's
resampling cost, and the detector's boxes say which framing would reproduce the training crops.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from distill.cache import Decoded, gray_uint8
from distill.ferplus import majority_labels
from distill.pairing import EvalSet, face_sets
from edge.audio.frontend import AudioConfig
from edge.vision.detect import FaceDetector, largest_face
from edge.vision.face import FaceConfig, crop_gray

UPSCALE = 4  # a 48 px face becomes 192 px: a face the detector sees at its usual size
BORDER = 0.5  # replicated edge around it, as a fraction of the upscaled side
SUFFIX = "_device_crop"


@dataclass(frozen=True)
class FrameEffects:
    """What a camera adds to the frames of the device-crop rows: the head tilted by `tilt`
    degrees (clockwise for even-numbered faces, counter-clockwise for odd ones), Gaussian
    sensor noise of `noise` gray levels (seeded per face), and the person `distance` times as
    far from the camera (the face 1/distance as wide in a frame of the same size)."""

    noise: float = 0.0
    tilt: float = 0.0
    distance: float = 1.0


NO_EFFECTS = FrameEffects()


def frame_layout(face_size: int, distance: float = 1.0) -> tuple[float, int]:
    """(the face's side, the frame's side) in pixels for a face_size face at `distance`; the
    face is centred in the frame."""
    side = face_size * UPSCALE
    return side / distance, side + 2 * int(side * BORDER)  # in_a_frame's replicated border


def in_a_frame(face: np.ndarray, effects: FrameEffects = NO_EFFECTS, seed: int = 0) -> np.ndarray:
    """A gray face crop upscaled UPSCALE times (bicubic) inside a frame of its replicated
    edges, with the `effects` of face number `seed`, as uint8. At a distance the whole frame
    shrinks by it (area average) onto a plain wall of its edges' median gray, as the room
    around a face that far from the camera."""
    import cv2

    side = face.shape[0] * UPSCALE
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    pad = int(side * BORDER)
    frame = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    if effects.distance != 1.0:
        frame = _far(frame, effects.distance)
    if effects.tilt:
        centre = (frame.shape[1] - 1) / 2, (frame.shape[0] - 1) / 2
        angle = -effects.tilt if seed % 2 == 0 else effects.tilt  # OpenCV: counter-clockwise
        turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
        frame = cv2.warpAffine(
            frame, turn, frame.shape[::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
        )
    if not effects.noise:
        return frame
    grain = np.random.default_rng(seed).normal(0.0, effects.noise, frame.shape)
    return np.clip(np.rint(frame + grain), 0, 255).astype(np.uint8)


def _far(frame: np.ndarray, distance: float) -> np.ndarray:
    """The frame shrunk `distance` times, centred on a wall of its edges' median gray."""
    import cv2

    side = frame.shape[0]
    small_side = round(side / distance)
    small = cv2.resize(frame, (small_side, small_side), interpolation=cv2.INTER_AREA)
    edges = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
    wall = np.full_like(frame, int(np.median(edges)))
    at = (side - small_side) // 2
    wall[at : at + small_side, at : at + small_side] = small
    return wall


def detector_boxes(
    faces: np.ndarray, detector: FaceDetector, effects: FrameEffects = NO_EFFECTS
) -> np.ndarray:
    """The largest face box (x, y, w, h) the detector finds in each face's frame (face i's
    effects drawn from seed i), in the frame's pixels, and its roll (N, 5); NaN where it finds
    none."""
    boxes = np.full((len(faces), 5), np.nan)
    for i, face in enumerate(faces):
        found = largest_face(detector, in_a_frame(face, effects, i))
        if found is not None:
            boxes[i] = (*found.box, found.roll)
    return boxes


def implied_framing(boxes: np.ndarray, face_size: int, distance: float = 1.0) -> dict[str, float]:
    """The margin and lift (FaceConfig's) that would cut each original face out of its frame
    again, as medians over the faces found: the framing that reproduces the training crops."""
    found = boxes[~np.isnan(boxes[:, 0])]
    if not len(found):
        return {"faces": 0}
    side, frame_side = frame_layout(face_size, distance)
    centre = frame_side / 2
    box_side = np.maximum(found[:, 2], found[:, 3])
    margin = (side / box_side - 1) / 2
    lift = (found[:, 1] + found[:, 3] / 2 - centre) / found[:, 3]
    return {
        "margin": round(float(np.median(margin)), 3),
        "lift": round(float(np.median(lift)), 3),
        "faces": len(found),
    }


def device_crops(
    faces: np.ndarray, boxes: np.ndarray, cfg: FaceConfig, effects: FrameEffects = NO_EFFECTS
) -> np.ndarray:
    """The device's crops (uint8, size × size) of the faces whose frame has a box, from the
    same frames as detector_boxes(…, effects), levelled by each box's roll."""
    found = np.flatnonzero(~np.isnan(boxes[:, 0]))
    crops = [
        gray_uint8(
            crop_gray(in_a_frame(faces[i], effects, i), tuple(boxes[i, :4]), cfg, boxes[i, 4])
        )
        for i in found
    ]
    return np.stack(crops) if crops else np.zeros((0, cfg.size, cfg.size), np.uint8)


def device_crop_sets(
    faces: Decoded,
    audio_cfg: AudioConfig,
    face_cfg: FaceConfig,
    detector: FaceDetector,
    effects: FrameEffects = NO_EFFECTS,
) -> tuple[list[EvalSet], dict[str, float]]:
    """The face-only sets (distill.pairing.face_sets) again with every face through the
    device's detector and crop ('face_only_device_crop', …; faces the detector misses are left
    out and counted), each frame with the camera's `effects`, and the framing the detector's
    boxes imply."""
    boxes = detector_boxes(faces.data, detector, effects)
    found = ~np.isnan(boxes[:, 0])
    framing = implied_framing(boxes, face_cfg.size, effects.distance)
    if not found.any():
        return [], framing
    crops = device_crops(faces.data, boxes, face_cfg, effects)
    seen = replace(faces.take(np.flatnonzero(found)), data=crops)
    missed = faces.take(np.flatnonzero(~found))
    lost = {  # the missed faces each set would have held
        "face_only": len(missed.labels),
        "face_only_ferplus": int((majority_labels(missed.votes)[0] >= 0).sum()),
    }
    sets = face_sets(seen, audio_cfg)
    for es in sets:
        es.excluded = {**es.excluded, "no_face_found": lost[es.name]}
        es.name += SUFFIX
    return sets, framing
