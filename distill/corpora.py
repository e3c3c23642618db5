"""Corpus loaders: speech (RAVDESS, EmoDB, URDU), faces (FER2013 folders with optional FER+
votes, or the Kaggle CSV), and a generic <root>/<class>/* folder of either.

A loader lists samples (path or pixels, label, split, person, corpus); decoding happens in
`distill.cache`. Canonical splits, speaker- or person-independent and fixed so numbers are
comparable:
  RAVDESS  actors 1–18 train, 19–20 val, 21–24 test
  EmoDB    speakers 15, 16 test; 11, 14 val; 03, 08, 09, 10, 12, 13 train (boredom is outside
           the 7 classes and skipped)
  URDU     by speaker (EMODB_/URDU_SPLIT below): 84 clips of 8 speakers test, 44 of 6 val,
           272 of the other 15 train; each split holds all 4 classes
  FER2013  Training → train, PublicTest → val, PrivateTest → test
  <root>/<class>/*                  every file 'test' (a folder given for evaluation)
  <root>/{train,val,test}/<class>/* the split its top folder names (the user's own split)
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.ferplus import read_votes
from edge.core.errors import DataError
from edge.core.labels import LABELS, label_index, warn_skipped

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm"}
SPLITS = ("train", "val", "test")

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
EMODB_NAME = re.compile(r"^(\d\d)[a-z]\d\d[A-Z][a-z]$")  # 03a01Wa: speaker 03
EMODB_SPLIT = {"15": "test", "16": "test", "11": "val", "14": "val"}  # others: train
URDU_NAME = re.compile(r"^(S[MF]\d+)_F\d+_[AHNS]\d+$")  # SM5_F01_A012: speaker SM5
URDU_SPLIT = {
    **dict.fromkeys(("SM2", "SF6", "SM6", "SM20", "SM21", "SM23", "SF11", "SM27"), "test"),
    **dict.fromkeys(("SM1", "SF1", "SF9", "SM22", "SF10", "SM26"), "val"),
}  # others: train
RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
FER_PREFIX_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FER_CSV_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@dataclass(frozen=True)
class Sample:
    """One labelled item of a corpus: a file (or inline pixels), its class, split, person,
    corpus name and, for FER2013 faces with a FER+ row, the 10 crowd votes (distill.ferplus)."""

    label: int
    split: str
    path: Path | None = None
    person: str = ""
    pixels: np.ndarray | None = None
    corpus: str = ""
    votes: tuple[int, ...] | None = None


def ravdess_split(actor: int) -> str:
    """The canonical RAVDESS split of an actor number."""
    return "train" if actor <= 18 else "val" if actor <= 20 else "test"


def _require_dir(root: Path, what: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{what} folder not found: {root}")
    return root


def load_ravdess(root: Path) -> list[Sample]:
    """RAVDESS speech: Actor_XX/03-01-EE-II-SS-RR-AA.{wav,flac}; calm counts as neutral."""
    root = _require_dir(root, "RAVDESS")
    samples, skipped, unnamed = [], [], 0
    for path in sorted(root.glob("Actor_*/*")):
        match = RAVDESS_NAME.match(path.stem)
        if path.suffix.lower() not in AUDIO_SUFFIXES or not match:
            unnamed += 1
            continue
        emotion = RAVDESS_EMOTIONS.get(match.group(3), f"code {match.group(3)}")
        label = label_index(emotion)
        if label is None:
            skipped.append(emotion)
            continue
        actor = int(match.group(7))
        samples.append(
            Sample(label, ravdess_split(actor), path, f"actor{actor:02d}", corpus="ravdess")
        )
    if unnamed:
        log.warning("skipped %d files under %s that are not RAVDESS audio names", unnamed, root)
    warn_skipped(skipped, "RAVDESS clips")
    if not samples:
        raise DataError(f"no RAVDESS clips (Actor_XX/03-01-EE-II-SS-RR-AA.wav|flac) under {root}")
    return samples


def load_fer_folders(root: Path) -> list[Sample]:
    """FER2013 folder layout: train|test/<class>/*.png; a Training_/PublicTest_/PrivateTest_
    file-name prefix gives the split, otherwise train/ is train and test/ is test. With a
    `ferplus.csv` in the root, each face listed there carries its FER+ votes."""
    root = _require_dir(root, "FER2013")
    votes = read_votes(root)
    samples, skipped = [], []
    for top in ("train", "test"):
        if not (root / top).is_dir():
            continue
        for class_dir in sorted(p for p in (root / top).iterdir() if p.is_dir()):
            label = label_index(class_dir.name)
            files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if label is None:
                skipped += [class_dir.name] * len(files)
                continue
            for path in files:
                prefix = path.name.split("_", 1)[0]
                split = FER_PREFIX_SPLIT.get(prefix, top)
                row = votes.get(path.relative_to(root).as_posix())
                row = None if row is None else tuple(int(v) for v in row)
                samples.append(Sample(label, split, path, corpus="fer2013", votes=row))
    warn_skipped(skipped, "FER2013 images")
    if not samples:
        raise DataError(f"no images in the FER2013 layout (train|test/<class>/*.png) under {root}")
    return samples


def load_fer_csv(path: Path) -> list[Sample]:
    """The Kaggle fer2013.csv form: columns emotion (0–6), pixels (2304 numbers), Usage."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"FER2013 CSV not found: {path}")
    samples = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                pixels = np.array(row["pixels"].split(), dtype=np.uint8).reshape(48, 48)
                label = label_index(FER_CSV_CLASSES[int(row["emotion"])])
            except (ValueError, IndexError) as error:
                raise DataError(f"{path}:{line}: bad row ({error})") from None
            split = FER_PREFIX_SPLIT.get(row["Usage"].strip())
            if split is None:
                raise DataError(
                    f"{path}:{line}: unknown Usage {row['Usage']!r}; "
                    f"allowed: {', '.join(FER_PREFIX_SPLIT)}"
                )
            samples.append(Sample(label, split, pixels=pixels, corpus="fer2013"))
    if not samples:
        raise DataError(f"{path}: no rows")
    return samples


SPEAKER_CORPORA = (("emodb", EMODB_NAME, EMODB_SPLIT), ("urdu", URDU_NAME, URDU_SPLIT))


def _speaker_corpus(paths: list[Path]) -> tuple[str, re.Pattern, dict[str, str]] | None:
    """The speech corpus of SPEAKER_CORPORA whose file-name pattern every path matches."""
    for corpus, pattern, splits in SPEAKER_CORPORA:
        if paths and all(pattern.match(p.stem) for p in paths):
            return corpus, pattern, splits
    return None


def _class_files(root: Path, suffixes: set[str]) -> list[tuple[Path, str]]:
    """(file, class folder name) of every file with one of `suffixes` under root/<class>/."""
    return [
        (path, class_dir.name)
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(p for p in class_dir.rglob("*") if p.suffix.lower() in suffixes)
    ]


def load_class_folder(root: Path, modality: str) -> list[Sample]:
    """Any corpus as <root>/<class>/* (images for modality 'face', audio for 'audio').

    EmoDB and URDU speech, recognised by their file names, get their speaker splits. Another
    corpus is all split 'test' (a folder given for evaluation), or, laid out as
    <root>/{train,val,test}/<class>/*, split as its top folders say (speakers unknown).
    """
    root = _require_dir(root, "class")
    suffixes = IMAGE_SUFFIXES if modality == "face" else AUDIO_SUFFIXES
    split_dirs = [s for s in SPLITS if (root / s).is_dir()]
    files = [
        (path, name, split)
        for split in split_dirs
        for path, name in _class_files(root / split, suffixes)
    ] or [(path, name, "test") for path, name in _class_files(root, suffixes)]
    paths = [path for path, _, _ in files]
    known = _speaker_corpus(paths) if modality == "audio" and not split_dirs else None
    samples, skipped = [], []
    for path, name, split in files:
        label = label_index(name)
        if label is None:
            skipped.append(name)
        elif known is None:
            samples.append(Sample(label, split, path, corpus=root.name))
        else:
            corpus, pattern, splits = known
            speaker = pattern.match(path.stem).group(1)  # type: ignore[union-attr]
            split = splits.get(speaker, "train")
            samples.append(Sample(label, split, path, person=speaker, corpus=corpus))
    warn_skipped(skipped, f"{modality} files")
    if not samples:
        raise DataError(
            f"no {modality} files in <class>/ folders under {root}; classes: {', '.join(LABELS)}"
        )
    return samples


def load_corpus(path: Path, modality: str) -> list[Sample]:
    """Pick the loader for `path`: RAVDESS, FER2013 folders, Kaggle CSV or a class folder
    (EmoDB, URDU or another)."""
    path = Path(path).expanduser()
    if path.suffix.lower() == ".csv":
        return load_fer_csv(path)
    path = _require_dir(path, modality)
    if modality == "audio" and any(path.glob("Actor_*")):
        return load_ravdess(path)
    if modality == "face" and ((path / "train").is_dir() or (path / "test").is_dir()):
        return load_fer_folders(path)
    return load_class_folder(path, modality)


def load_speech(paths: list[Path] | tuple[Path, ...]) -> list[Sample]:
    """The samples of several speech corpora together (each loaded by load_corpus)."""
    samples: list[Sample] = []
    for path in paths:
        samples += load_corpus(Path(path), "audio")
    return samples
