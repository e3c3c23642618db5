"""Real audio-visual clips of one person, face and voice of the same recording: CREMA-D and
RAVDESS's audio-video part, for `emoedge evaluate --av` (same-person fusion, not class-paired).

Layouts (files anywhere under the given folder):
  CREMA-D  <actor>_<sentence>_<EMO>_<level>.{flv,mp4} with the same name .wav (the download's
           VideoFlash/ and AudioWAV/ folders, or side by side); EMO ANG DIS FEA HAP NEU SAD
  RAVDESS  video 01-01-… or 02-01-EE-II-SS-RR-AA.mp4 with the speech-audio file of the same
           recording, 03-01-EE-II-SS-RR-AA.{wav,flac}

For each clip the model sees what the daemon would: the 3 s speech window centred on the
speech energy, and the face in the video frame at the middle of that window (the largest face
the device's detector finds, cropped the device's way). A clip whose frame shows no face is
left out of the face and fused rows and counted.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.cache import device_detector, device_face, read_audio
from distill.corpora import AUDIO_SUFFIXES, RAVDESS_EMOTIONS
from distill.pairing import EvalSet, centred_start
from edge.audio.frontend import AudioConfig, window_features
from edge.core.errors import DataError
from edge.core.labels import label_index
from edge.vision.face import FaceConfig

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".flv", ".mp4", ".avi", ".mov", ".mkv"}
CREMA_NAME = re.compile(r"^(\d{4})_[A-Z]{3}_([A-Z]{3})_[A-Z0-9]{2}$")
CREMA_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
RAVDESS_VIDEO = re.compile(r"^0[12]-01-(\d\d-\d\d-\d\d-\d\d-(\d\d))$")


@dataclass(frozen=True)
class AVClip:
    """One recording: its video, its speech, the intended class and the person."""

    video: Path
    audio: Path
    label: int
    person: str
    corpus: str

    @property
    def name(self) -> str:
        return self.video.stem


def _identify(video: Path) -> tuple[str, str, str, str] | None:
    """(corpus, audio stem, class name, person) of a video file name, or None."""
    crema = CREMA_NAME.match(video.stem)
    if crema and crema.group(2) in CREMA_EMOTIONS:
        return "crema-d", video.stem, CREMA_EMOTIONS[crema.group(2)], crema.group(1)
    ravdess = RAVDESS_VIDEO.match(video.stem)
    if ravdess:
        emotion = RAVDESS_EMOTIONS.get(ravdess.group(1)[:2], "")
        return "ravdess", f"03-01-{ravdess.group(1)}", emotion, f"actor{ravdess.group(2)}"
    return None


def load_av_clips(root: Path) -> list[AVClip]:
    """Every paired clip under `root` (see the module doc); videos without their speech file,
    or of a class outside the 7, are counted in one warning."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"audio-visual folder not found: {root}")
    files = [p for p in root.rglob("*") if p.is_file()]
    audio = {p.stem: p for p in files if p.suffix.lower() in AUDIO_SUFFIXES}
    clips, unpaired = [], 0
    for video in sorted(p for p in files if p.suffix.lower() in VIDEO_SUFFIXES):
        known = _identify(video)
        label = None if known is None else label_index(known[2])
        if known is None or label is None or known[1] not in audio:
            unpaired += 1
            continue
        corpus, stem, _, person = known
        clips.append(AVClip(video, audio[stem], label, person, corpus))
    if unpaired:
        log.warning(
            "skipped %d videos under %s without a paired speech file or class", unpaired, root
        )
    if not clips:
        raise DataError(
            f"no paired audio-visual clips under {root} (CREMA-D <actor>_<sentence>_<EMO>_<level> "
            "video + .wav, or RAVDESS 02-01-… video + 03-01-… speech)"
        )
    return clips


def frame_at(video: Path, seconds: float) -> np.ndarray:
    """The RGB frame of `video` shown at `seconds` (the last one when the video is shorter)."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            raise DataError(f"cannot open video {video}")
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
        capture.set(cv2.CAP_PROP_POS_FRAMES, min(int(seconds * fps), frames - 1))
        ok, bgr = capture.read()
    finally:
        capture.release()
    if not ok:
        raise DataError(f"cannot read a frame of {video} at {seconds:.2f} s")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass
class AVInputs:
    """The model inputs of real clips: uint8 faces (blank where none was found), voice
    features, classes, and whether a face was found."""

    clips: list[AVClip]
    faces: np.ndarray
    audio: np.ndarray
    labels: np.ndarray
    found: np.ndarray

    def masked(self, name: str, mask: tuple[float, float], rows: np.ndarray) -> EvalSet:
        """The clips of `rows` with modality mask `mask`, as an evaluation set."""
        m = np.tile(mask, (int(rows.sum()), 1)).astype(np.float32)
        excluded = {"no_face": int((~rows).sum())} if (~rows).any() else {}
        corpora = np.full(int(rows.sum()), "av-clips")  # an adapting voice: heard together
        return EvalSet(
            name, self.faces[rows], self.audio[rows], m, self.labels[rows], excluded, corpora
        )

    def sets(self) -> list[EvalSet]:
        """'av_fused', 'av_face' (voice masked) and 'av_voice' (face masked); clips without a
        detected face are excluded from the first two and counted."""
        every = np.ones(len(self.clips), bool)
        return [
            self.masked("av_fused", (1.0, 1.0), self.found),
            self.masked("av_face", (1.0, 0.0), self.found),
            self.masked("av_voice", (0.0, 1.0), every),
        ]


def av_inputs(clips: list[AVClip], audio_cfg: AudioConfig, face_cfg: FaceConfig) -> AVInputs:
    """Each clip's centred speech window and the face in the frame at its middle."""
    detector = device_detector()
    blank = np.zeros((face_cfg.size, face_cfg.size), np.uint8)
    faces, feats, found = [], [], []
    for clip in clips:
        wave = read_audio(clip.audio, audio_cfg.sample_rate)
        start = centred_start(wave, audio_cfg)
        window = wave[start : start + audio_cfg.window_samples]
        image = frame_at(clip.video, (start + len(window) / 2) / audio_cfg.sample_rate)
        face = device_face(image, detector, face_cfg)
        found.append(face is not None)
        faces.append(blank if face is None else face)
        feats.append(window_features(window, audio_cfg))
    labels = np.array([c.label for c in clips])
    return AVInputs(clips, np.stack(faces), np.stack(feats), labels, np.array(found))
