"""Real same-person audio-visual clips: CREMA-D and RAVDESS audio-video naming, the face at
the middle of the speech window, and `emoedge evaluate --av`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distill.avclips import av_inputs, load_av_clips
from edge.audio.frontend import AudioConfig
from edge.core.errors import DataError
from edge.core.labels import LABELS
from edge.vision.face import FaceConfig
from tests.fixtures_daemon import SAMPLE
from tests.fixtures_export import run_emoedge
from tests.tiny_corpora import Corpora, speech_clip


def write_clip(video_path, audio_path, with_face: bool = True) -> None:
    """A 2 s MJPG clip (frames of the bundled sample: its first second shows a face; a face-free
    crop of its last frame otherwise) and 2 s of speech-like tone."""
    import cv2
    import soundfile

    source = cv2.VideoCapture(str(SAMPLE / "sample.avi"))
    frames = []
    while len(frames) < 130:
        ok, frame = source.read()
        if not ok:
            break
        frames.append(frame)
    source.release()
    frame = frames[5] if with_face else frames[-1]
    h, w = frame.shape[:2]
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for _ in range(20):
        writer.write(frame)
    writer.release()
    rng = np.random.default_rng(0)
    soundfile.write(audio_path, speech_clip(3, rng, 16000, 2.0), 16000)


def test_crema_and_ravdess_names_pair_video_and_speech(tmp_path) -> None:
    (tmp_path / "VideoFlash").mkdir()
    (tmp_path / "AudioWAV").mkdir()
    write_clip(
        tmp_path / "VideoFlash" / "1001_DFA_HAP_XX.avi",
        tmp_path / "AudioWAV" / "1001_DFA_HAP_XX.wav",
    )
    write_clip(tmp_path / "02-01-05-01-01-01-07.avi", tmp_path / "03-01-05-01-01-01-07.wav", False)
    write_clip(tmp_path / "1001_DFA_SAD_XX.avi", tmp_path / "other.wav")  # no speech file
    clips = load_av_clips(tmp_path)
    assert [(c.corpus, LABELS[c.label], c.person) for c in clips] == [
        ("ravdess", "angry", "actor07"),
        ("crema-d", "happy", "1001"),
    ]
    inputs = av_inputs(clips, AudioConfig(), FaceConfig())
    assert inputs.found.tolist() == [False, True]
    assert inputs.faces.shape == (2, 48, 48) and inputs.faces.dtype == np.uint8
    assert inputs.faces[1].std() > 10 and not inputs.faces[0].any()
    names = [s.name for s in inputs.sets()]
    assert names == ["av_fused", "av_face", "av_voice"]
    fused, face, voice = inputs.sets()
    assert (len(fused), len(face), len(voice)) == (1, 1, 2)
    assert fused.excluded == {"no_face": 1}


def test_a_folder_without_pairs_is_a_data_error(tmp_path) -> None:
    with pytest.raises(DataError, match="no paired audio-visual clips"):
        load_av_clips(tmp_path)


@pytest.mark.data
def test_evaluate_scores_the_real_crema_d_clips(
    shared_data, tiny_corpora: Corpora, tmp_path
) -> None:
    out = tmp_path / "m.json"
    code = run_emoedge(
        "evaluate",
        "distill/checkpoints/student.pt",
        "--av",
        shared_data / "crema-d-sample",
        *tiny_corpora.args(tiny_corpora.emodb),  # the other rows do not matter here: tiny data
        "--json",
        out,
    )
    assert code == 0
    result = json.loads(out.read_text())
    clips = result["av_clips"]
    assert [c["label"] for c in clips] == ["angry", "disgust", "fear", "happy", "neutral", "sad"]
    assert all(c["face"] is not None for c in clips)  # the actor's face is found in every clip
    assert result["metrics"]["av_fused"]["n"] == 6 and result["metrics"]["av_voice"]["n"] == 6
