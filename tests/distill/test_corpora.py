"""Loaders on tiny corpora in each layout, and bad input: each a clear error or a counted skip."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import edge
from distill.cache import decode_audio, decode_faces
from distill.corpora import load_class_folder, load_corpus, load_fer_csv, ravdess_split
from edge.audio.frontend import AudioConfig
from edge.core.errors import DataError
from edge.core.labels import LABELS
from tests.tiny_corpora import write_fer_csv, write_fer_folders, write_ravdess


def test_ravdess_layout_split_by_actor_and_calm_is_neutral(tmp_path) -> None:
    root = write_ravdess(tmp_path / "rav", actors=(1, 18, 19, 20, 21, 24))
    (tmp_path / "rav" / "Actor_01" / "03-01-02-01-01-01-01.wav").write_bytes(
        (tmp_path / "rav" / "Actor_01" / "03-01-01-01-01-01-01.wav").read_bytes()
    )
    samples = load_corpus(root, "audio")
    assert Counter(s.split for s in samples) == {"train": 15, "val": 14, "test": 14}
    calm = [s for s in samples if s.path.name.startswith("03-01-02")]
    assert calm[0].label == LABELS.index("neutral")
    assert [ravdess_split(a) for a in (1, 18, 19, 20, 21, 24)] == [
        "train",
        "train",
        "val",
        "val",
        "test",
        "test",
    ]


def test_ravdess_48k_wav_and_16k_flac_decode_to_16k(tmp_path) -> None:
    cfg = AudioConfig()
    for sr, suffix in ((48000, ".wav"), (16000, ".flac")):
        root = write_ravdess(tmp_path / suffix[1:], actors=(1,), sr=sr, suffix=suffix)
        decoded = decode_audio(load_corpus(root, "audio"), cfg, cache_dir=tmp_path / "cache")
        assert len(decoded) == 7
        assert all(abs(len(w) - 3.2 * 16000) <= 1 for w in decoded.data)


def test_fer_folders_prefix_gives_split(tmp_path) -> None:
    samples = load_corpus(write_fer_folders(tmp_path / "fer"), "face")
    assert Counter(s.split for s in samples) == {"train": 28, "val": 14, "test": 14}
    faces = decode_faces(samples, cache_dir=tmp_path / "cache")
    assert faces.data.shape == (56, 48, 48) and faces.data.dtype == np.uint8


def test_fer_kaggle_csv(tmp_path) -> None:
    samples = load_fer_csv(write_fer_csv(tmp_path / "fer2013.csv"))
    assert Counter(s.split for s in samples) == {"train": 14, "val": 14, "test": 14}
    sad = [s for s in samples if s.label == LABELS.index("sad")]
    assert len(sad) == 6  # Kaggle index 4 is sad, not neutral
    faces = decode_faces(samples, cache_dir=tmp_path / "cache")
    assert faces.data.shape == (42, 48, 48)


def test_class_folder_with_aliases_and_an_unknown_class(tmp_path, caplog) -> None:
    fer = write_fer_folders(tmp_path / "fer", {"Training": 2})
    generic = tmp_path / "generic"
    generic.mkdir()
    (fer / "train" / "happy").rename(generic / "happiness")
    (fer / "train" / "sad").rename(generic / "Sadness")
    (generic / "contempt").mkdir()
    for f in (generic / "Sadness").iterdir():
        (generic / "contempt" / f.name).write_bytes(f.read_bytes())
    with caplog.at_level(logging.WARNING):
        samples = load_class_folder(generic, "face")
    assert Counter(LABELS[s.label] for s in samples) == {"happy": 2, "sad": 2}
    assert "skipped 2 face files outside the 7 classes (contempt ×2)" in caplog.text


def test_corrupt_files_are_counted_and_skipped(tmp_path, caplog) -> None:
    root = write_ravdess(tmp_path / "rav", actors=(1,))
    (root / "Actor_01" / "03-01-05-01-01-01-01.wav").write_bytes(b"RIFF not really audio")
    with caplog.at_level(logging.WARNING):
        decoded = decode_audio(load_corpus(root, "audio"), AudioConfig(), tmp_path / "cache")
    assert len(decoded) == 6
    assert "skipped 1 unreadable audio files" in caplog.text
    assert "03-01-05-01-01-01-01.wav" in caplog.text


def test_nothing_readable_is_a_data_error(tmp_path) -> None:
    root = write_fer_folders(tmp_path / "fer", {"Training": 1})
    for png in root.rglob("*.png"):
        png.write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="none of the 7 images could be read"):
        decode_faces(load_corpus(root, "face"), cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("modality", ["face", "audio"])
def test_empty_or_missing_folder_is_a_clear_error(tmp_path, modality) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no .* under"):
        load_corpus(tmp_path / "empty", modality)
    with pytest.raises(DataError, match="not found"):
        load_corpus(tmp_path / "missing", modality)


def test_cache_is_reused_and_invalidated(tmp_path) -> None:
    root = write_fer_folders(tmp_path / "fer", {"Training": 1})
    cache = tmp_path / "cache"
    decode_faces(load_corpus(root, "face"), cache_dir=cache)
    assert len(list(cache.glob("faces-*.npz"))) == 1
    decode_faces(load_corpus(root, "face"), cache_dir=cache)
    assert len(list(cache.glob("faces-*.npz"))) == 1
    next(root.rglob("*.png")).unlink()
    decode_faces(load_corpus(root, "face"), cache_dir=cache)
    assert len(list(cache.glob("faces-*.npz"))) == 2


def test_face_photos_are_cropped_as_the_device_crops_them(tmp_path, caplog) -> None:
    from PIL import Image

    from distill.avclips import frame_at
    from distill.cache import device_face
    from edge.core.config import DetectorConfig
    from edge.vision.detect import load_detector
    from edge.vision.face import resize_image, to_gray

    clip = Path(edge.__file__).parent / "assets" / "crema-d" / "1001_DFA_ANG_XX.flv"
    frame = frame_at(clip, 1.0)  # a real person, 480×360
    root = tmp_path / "posed"
    (root / "angry").mkdir(parents=True)
    Image.fromarray(frame).save(root / "angry" / "person.png")
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(root / "angry" / "wall.png")
    samples = load_corpus(root, "face")
    with caplog.at_level(logging.INFO):
        faces = decode_faces(samples, cache_dir=tmp_path / "cache")
    by_name = dict(zip((s.path.name for s in samples), faces.data, strict=True))
    expected = device_face(frame, load_detector(DetectorConfig()))
    assert expected is not None and np.array_equal(by_name["person.png"], expected)
    whole = np.clip(resize_image(to_gray(frame), 48) + 0.5, 0, 255).astype(np.uint8)
    assert np.mean(np.abs(by_name["person.png"].astype(int) - whole)) > 10  # not the whole frame
    assert np.all(by_name["wall.png"] == 90)  # no face: the whole image
    assert "1 of 2 photos: the device's detector found no face" in caplog.text
    assert "wall.png" in caplog.text


def test_a_photo_stored_sideways_is_read_upright(tmp_path) -> None:
    """A phone's portrait photo: pixels stored rotated, the EXIF orientation says how to turn
    them; the loader turns them, so the detector sees the face upright."""
    from PIL import Image

    from distill.cache import read_image

    upright = np.zeros((60, 40, 3), np.uint8)
    upright[:10] = 255  # a white band at the top
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # 40 × 60, band left
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: turn 90° clockwise to view
    stored.save(tmp_path / "portrait.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "portrait.jpg")
    assert image.shape == (60, 40, 3)
    assert image[:8].mean() > 200 and image[14:].mean() < 30
