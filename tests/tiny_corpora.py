"""Tiny corpora generated in the real layouts (RAVDESS, FER2013 folders, Kaggle CSV, class folder),
and `tiny_corpora`, the one set of them that the training, export and evaluation tests share.

Faces are noise images with a class-dependent bright bar; clips are tones whose pitch depends
on the class, so a model can learn them and a test can tell learning from chance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edge.core.labels import LABELS

RAVDESS_CODES = {
    "neutral": "01",
    "happy": "03",
    "sad": "04",
    "angry": "05",
    "fear": "06",
    "disgust": "07",
    "surprise": "08",
}


def face_image(label: int, rng: np.random.Generator) -> np.ndarray:
    img = rng.integers(0, 80, (48, 48)).astype(np.uint8)
    img[label * 6 : label * 6 + 6, :] = 230
    return img


def speech_clip(label: int, rng: np.random.Generator, sr: int = 16000, seconds: float = 3.2):
    t = np.arange(int(sr * seconds)) / sr
    tone = 0.3 * np.sin(2 * np.pi * (150 + 60 * label) * t)
    return (tone + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write_ravdess(
    root: Path,
    actors=(1, 2, 19, 21),
    clips_per_class: int = 1,
    sr: int = 48000,
    suffix: str = ".wav",
) -> Path:
    """Actor_XX/03-01-EE-01-SS-RR-AA.<suffix> for every class, resampled to `sr`."""
    import soundfile

    rng = np.random.default_rng(0)
    for actor in actors:
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, code in RAVDESS_CODES.items():
            for rep in range(clips_per_class):
                wave = speech_clip(LABELS.index(name), rng, sr)
                stem = f"03-01-{code}-01-01-{rep + 1:02d}-{actor:02d}"
                soundfile.write(folder / f"{stem}{suffix}", wave, sr)
    return root


def write_fer_folders(root: Path, per_class: dict[str, int] | None = None) -> Path:
    """train|test/<class>/{Training,PublicTest,PrivateTest}_N.png."""
    from PIL import Image

    per_class = per_class or {"Training": 4, "PublicTest": 2, "PrivateTest": 2}
    rng = np.random.default_rng(1)
    for label, name in enumerate(LABELS):
        for prefix, n in per_class.items():
            top = "train" if prefix == "Training" else "test"
            folder = root / top / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(face_image(label, rng)).save(
                    folder / f"{prefix}_{label}{i:04d}.png"
                )
    return root


def write_fer_csv(path: Path, rows_per_usage: int = 2) -> Path:
    """The Kaggle fer2013.csv form (emotion index order of that file)."""
    kaggle_order = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    rng = np.random.default_rng(2)
    lines = ["emotion,pixels,Usage"]
    for k, name in enumerate(kaggle_order):
        for usage in ("Training", "PublicTest", "PrivateTest"):
            for _ in range(rows_per_usage):
                pixels = " ".join(map(str, face_image(LABELS.index(name), rng).ravel()))
                lines.append(f"{k},{pixels},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


EMODB_LETTERS = {
    "angry": "W",
    "boredom": "L",
    "disgust": "E",
    "fear": "A",
    "happy": "F",
    "neutral": "N",
    "sad": "T",
}


def write_emodb(root: Path, speakers=("03", "11", "15"), sr: int = 16000) -> Path:
    """EmoDB's layout: <class>/<speaker>a01<letter>a.flac (boredom included, outside the 7)."""
    import soundfile

    rng = np.random.default_rng(3)
    for name, letter in EMODB_LETTERS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        label = LABELS.index(name) if name in LABELS else 0
        for speaker in speakers:
            wave = speech_clip(label, rng, sr, seconds=2.0)
            soundfile.write(folder / f"{speaker}a01{letter}a.flac", wave, sr)
    return root


def write_urdu(root: Path, speakers=("SM1", "SM2", "SM4"), sr: int = 16000) -> Path:
    """URDU's layout: <class>/<speaker>_F<n>_<letter><nnn>.flac for its 4 classes."""
    import soundfile

    rng = np.random.default_rng(4)
    for n, name in enumerate(("angry", "happy", "neutral", "sad")):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k, speaker in enumerate(speakers):
            wave = speech_clip(LABELS.index(name), rng, sr, seconds=2.0)
            soundfile.write(folder / f"{speaker}_F{k}_{name[0].upper()}{n:03d}.flac", wave, sr)
    return root


@dataclass(frozen=True)
class Corpora:
    """FER2013 folders, RAVDESS (a train, a val and a test actor, 16 kHz), EmoDB and URDU, and
    a decoded-corpus cache for them."""

    faces: Path
    speech: Path  # RAVDESS
    emodb: Path
    urdu: Path
    cache: Path

    def args(self, *speech: Path) -> list[str]:
        """The data options of `emoedge distill`, `export` and `evaluate`: the faces, the
        speech corpora (RAVDESS unless given) and the cache."""
        corpora = [str(p) for p in speech or (self.speech,)]
        return ["--faces", str(self.faces), "--speech", *corpora, "--cache-dir", str(self.cache)]


@pytest.fixture(scope="session")
def tiny_corpora(tmp_path_factory: pytest.TempPathFactory) -> Corpora:
    root = tmp_path_factory.mktemp("corpora")
    return Corpora(
        write_fer_folders(root / "fer2013"),
        write_ravdess(root / "ravdess", actors=(1, 19, 21), sr=16000),
        write_emodb(root / "emodb"),
        write_urdu(root / "urdu"),
        root / "cache",
    )
