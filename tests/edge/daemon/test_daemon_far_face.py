"""A person far from the camera: the real daemon (`emoedge run`, file sources, the bundled
default model, a real broker) on the bundled CREMA-D clip with every frame shrunk three times
onto a plain wall (the actor's face about 36 px wide in 480×360) finds the face with the
default `detector.reach` ("auto": the full-range model there) and publishes face and voice
together; the short-range model alone sees no face in the same video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import edge
from tests.fixtures_daemon import clip_states

CLIP = Path(edge.__file__).parent / "assets" / "crema-d" / "1001_DFA_ANG_XX"
FARTHER = 3


def far_video(path: Path) -> Path:
    """The clip's video with each frame shrunk FARTHER times, centred on a wall of the first
    frame's edge colour (MJPG AVI, same size and frame rate)."""
    source = cv2.VideoCapture(str(CLIP.with_suffix(".flv")))
    fps = source.get(cv2.CAP_PROP_FPS)
    frames = []
    while (read := source.read())[0]:
        frames.append(read[1])
    source.release()
    h, w = frames[0].shape[:2]
    edges = np.concatenate([frames[0][0], frames[0][-1], frames[0][:, 0], frames[0][:, -1]])
    wall = np.median(edges, axis=0).astype(np.uint8)
    sh, sw = h // FARTHER, w // FARTHER
    y, x = (h - sh) // 2, (w - sw) // 2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for frame in frames:
        out = np.empty_like(frame)
        out[:] = wall
        out[y : y + sh, x : x + sw] = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)
        writer.write(out)
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return far_video(tmp_path_factory.mktemp("far") / "far.avi")


@pytest.mark.parametrize("reach", ["auto", "short"])
def test_the_daemon_finds_a_face_far_from_the_camera(video, tmp_path, mqtt_broker, reach):
    states = clip_states(
        video, CLIP.with_suffix(".wav"), tmp_path, mqtt_broker, detector={"reach": reach}
    )
    assert states, "nothing was published"
    seen = [s for s in states if s["modalities"]["face"]]
    if reach == "short":
        assert not seen, "the short-range model found a face it cannot reach"
        return
    both = [s for s in seen if s["modalities"]["audio"] and s["state"] == "present"]
    assert both, f"no prediction from face and voice: {[s['modalities'] for s in states]}"
    assert both[-1]["by_modality"]["face"]["label"]
