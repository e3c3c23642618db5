"""Decode a corpus once into arrays and cache them on disk, so an epoch never decodes again.

Unreadable files are skipped, counted and named in one warning; a corpus with nothing
readable is a DataError. The cache key covers every file's path, size and mtime.

Face images are read as the device sees a face: an image whose shorter side is above
`PHOTO_ABOVE` pixels is a photo, not a face crop, and gives the largest face the device's
detector finds in it, cropped the device's way (`device_face`); a photo where none is found is
used whole, and counted in a warning. Smaller images (FER2013's 48×48) are taken as crops.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from distill.corpora import Sample
from distill.ferplus import NUM_VOTES
from edge.audio.frontend import AudioConfig, resample, to_mono_float
from edge.core.config import DetectorConfig
from edge.core.errors import DataError
from edge.vision.face import FaceConfig, crop_gray, resize_image, to_gray

if TYPE_CHECKING:
    from edge.vision.detect import FaceDetector

log = logging.getLogger(__name__)

PHOTO_ABOVE = 96  # px: the shorter side of a face image above which it is a photo, not a crop
# how images become faces (part of the cache key): photos cropped with the device's framing,
# images shrunk by area averaging (edge.vision.face.resize_image), turned upright by their EXIF,
# faces levelled by their eyes
FACE_READING = (
    "faces48;photos:device-detector;margin={margin};lift={lift};shrink:area;exif;level"
    ";reach:{reach}"
).format(**FaceConfig().to_dict(), reach=DetectorConfig().reach)


def default_cache_dir() -> Path:
    """$EMOEDGE_CACHE, or ~/.cache/emoedge."""
    return Path(os.environ.get("EMOEDGE_CACHE", Path.home() / ".cache" / "emoedge"))


@dataclass
class Decoded:
    """Decoded samples of one modality; `data` is (N, 48, 48) uint8 faces or a list of waves.
    `votes` (N, 10) holds FER+ vote counts (all zero for a face without them)."""

    data: np.ndarray | list[np.ndarray]
    labels: np.ndarray
    splits: np.ndarray
    persons: np.ndarray
    corpora: np.ndarray
    votes: np.ndarray

    def select(self, split: str) -> Decoded:
        """The samples of one split."""
        return self.take(np.flatnonzero(self.splits == split))

    def take(self, idx: np.ndarray) -> Decoded:
        """The samples at the indices `idx`, in that order."""
        data = self.data[idx] if isinstance(self.data, np.ndarray) else [self.data[i] for i in idx]
        return Decoded(
            data,
            self.labels[idx],
            self.splits[idx],
            self.persons[idx],
            self.corpora[idx],
            self.votes[idx],
        )

    def __len__(self) -> int:
        return len(self.labels)


def _key(samples: Sequence[Sample], extra: str) -> str:
    digest = hashlib.sha1(extra.encode())
    for s in samples:
        if s.path is not None:
            stat = s.path.stat()
            digest.update(f"{s.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        else:
            digest.update(s.pixels.tobytes())
        digest.update(f"|{s.label}|{s.split}|{s.person}|{s.corpus}|{s.votes}".encode())
    return digest.hexdigest()[:16]


def read_image(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (height, width, 3), upright: a camera's EXIF orientation
    (a phone's portrait photo stored sideways) is applied, as image viewers do."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"unreadable image {path}: {error}") from None


@cache
def device_detector(reach: str | None = None) -> FaceDetector:
    """The device's face detector with its default settings, BlazeFace's `reach` if given
    (loaded once for each, at the first use)."""
    from edge.vision.detect import load_detector

    cfg = DetectorConfig()
    return load_detector(cfg if reach is None else replace(cfg, reach=reach))


def device_face(
    image: np.ndarray, detector: FaceDetector, cfg: FaceConfig | None = None
) -> np.ndarray | None:
    """The largest face `detector` finds in a camera frame or photo, cropped as the device
    crops it (gray uint8, size × size), or None when it finds none."""
    from edge.vision.detect import largest_face

    cfg = cfg or FaceConfig()
    found = largest_face(detector, image)
    return None if found is None else gray_uint8(crop_gray(image, found.box, cfg, found.roll))


def gray_uint8(gray: np.ndarray) -> np.ndarray:
    """A 0..255 float gray image rounded to uint8, the form faces are stored in."""
    return np.clip(gray + 0.5, 0, 255).astype(np.uint8)


def read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """An audio file as float32 mono at `sample_rate`."""
    import soundfile

    try:
        wave, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError) as error:
        raise DataError(f"unreadable audio {path}: {error}") from None
    if len(wave) == 0:
        raise DataError(f"empty audio file {path}")
    return resample(to_mono_float(wave), sr, sample_rate)


def first_few(items: Sequence[str], separator: str, n: int = 3) -> str:
    """The first `n` items joined, with " …" when there are more."""
    return separator.join(items[:n]) + (" …" if len(items) > n else "")


def _decode_all(samples: Sequence[Sample], decode: Callable[[Sample], np.ndarray], what: str):
    kept, data, bad = [], [], []
    for sample in tqdm(samples, desc=f"decoding {what}", unit="file", leave=False):
        try:
            data.append(decode(sample))
            kept.append(sample)
        except DataError as error:
            bad.append(str(error))
    if bad:
        log.warning("skipped %d unreadable %s: %s", len(bad), what, first_few(bad, "; "))
    if not kept:
        raise DataError(f"none of the {len(samples)} {what} could be read")
    return kept, data


def _meta(kept: Sequence[Sample]) -> dict[str, np.ndarray]:
    no_votes = (0,) * NUM_VOTES
    return {
        "labels": np.array([s.label for s in kept], dtype=np.int64),
        "splits": np.array([s.split for s in kept]),
        "persons": np.array([s.person for s in kept]),
        "corpora": np.array([s.corpus for s in kept]),
        "votes": np.array([s.votes or no_votes for s in kept], dtype=np.int16).reshape(
            -1, NUM_VOTES
        ),
    }


META = ("labels", "splits", "persons", "corpora", "votes")


def _save_atomically(cache: Path, **arrays: np.ndarray) -> None:
    """np.savez to a temporary name, then rename: a concurrent reader sees all or nothing."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f".{cache.name}.{os.getpid()}.partial")
    with open(partial, "wb") as f:
        np.savez(f, **arrays)
    os.replace(partial, cache)


def pcm_arrays(waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """float waves in [-1, 1] → all their samples as int16 and each wave's start (N + 1)."""
    pcm = np.concatenate([np.clip(w * 32768.0, -32768, 32767) for w in waves]).astype(np.int16)
    return pcm, np.cumsum([0] + [len(w) for w in waves])


def waves_from_pcm(pcm: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """The inverse of pcm_arrays: float32 waves (int16 / 32768, exact)."""
    return np.split(pcm.astype(np.float32) / 32768.0, offsets[1:-1])


def save_decoded(cache: Path, decoded: Decoded) -> None:
    """A Decoded as a cache file: faces as uint8, speech as int16 samples and offsets."""
    if isinstance(decoded.data, np.ndarray):
        arrays = {"data": decoded.data}
    else:
        pcm, offsets = pcm_arrays(decoded.data)
        arrays = {"pcm": pcm, "offsets": offsets}
    _save_atomically(cache, **arrays, **{k: getattr(decoded, k) for k in META})


def load_decoded(cache: Path) -> Decoded | None:
    """The Decoded of a cache file written by save_decoded; None when there is none."""
    if not cache.exists():
        return None
    with np.load(cache) as z:
        data = z["data"] if "data" in z else waves_from_pcm(z["pcm"], z["offsets"])
        return Decoded(data, *(z[k] for k in META))


def decode_faces(samples: Sequence[Sample], cache_dir: Path | None = None) -> Decoded:
    """Faces as (N, 48, 48) uint8, from the cache when it is current (photos: see above)."""
    cache = (cache_dir or default_cache_dir()) / f"faces-{_key(samples, FACE_READING)}.npz"
    cached = load_decoded(cache)
    if cached is not None:
        return cached
    photos, faceless = 0, []

    def decode(s: Sample) -> np.ndarray:
        nonlocal photos
        if s.pixels is not None:
            return s.pixels
        image = read_image(s.path)
        if min(image.shape[:2]) > PHOTO_ABOVE:
            photos += 1
            face = device_face(image, device_detector())
            if face is not None:
                return face
            faceless.append(s.path.name)
        return gray_uint8(resize_image(to_gray(image), FaceConfig().size))

    kept, data = _decode_all(samples, decode, "images")
    if photos:
        log.info("%d photos: faces cropped as the device crops them", photos - len(faceless))
    if faceless:
        log.warning(
            "%d of %d photos: the device's detector found no face, the whole image is used: %s",
            len(faceless),
            photos,
            first_few(faceless, ", "),
        )
    result = Decoded(np.stack(data), **_meta(kept))
    save_decoded(cache, result)
    return result


def decode_audio(
    samples: Sequence[Sample], cfg: AudioConfig, cache_dir: Path | None = None
) -> Decoded:
    """Waves as float32 mono at cfg.sample_rate (a list), from the cache when it is current."""
    cache = (cache_dir or default_cache_dir()) / f"audio-{_key(samples, str(cfg.sample_rate))}.npz"
    cached = load_decoded(cache)
    if cached is not None:
        return cached
    kept, waves = _decode_all(samples, lambda s: read_audio(s.path, cfg.sample_rate), "audio files")
    result = Decoded(waves_from_pcm(*pcm_arrays(waves)), **_meta(kept))
    save_decoded(cache, result)
    return result
