"""A data pack (`emoedge distill pack`): the decoded faces and speech of a training run in a
compact, lossless form that numpy and the standard library read, cut into parts of at most
`part_mb` MB so that each part travels on its own, e.g. to a GPU machine without the corpora.

PACK/manifest.json lists every array (codec, dtype, shape, byte range in the stream) and every
part (size, SHA-256); PACK/part-000, part-001, … are one byte stream cut in pieces. Reading
checks every part and decodes the arrays into the same `Decoded` the corpus folders give:
faces as the same uint8 arrays, speech as the same int16 samples at the same sample rate
(what the decoded-corpus cache holds), with labels, splits, persons, corpora and FER+ votes,
and, unless packed without them, each clip's state in each pretrained speech encoder.

Codecs, all lossless, then lzma:
- faces: each pixel minus the median edge predictor of JPEG-LS (LOCO-I) from its left, upper
  and upper-left neighbours, mod 256 (FER2013: 83 MB raw, 61 MB with lzma alone, 53 MB so);
- speech: the first difference of the int16 samples mod 2^16, zigzag-mapped, low and high
  bytes as two planes (RAVDESS: 32 % of the raw size against 37 % with lzma alone);
- everything else: the array's .npy bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from distill.cache import META, Decoded, pcm_arrays, waves_from_pcm
from edge.core.errors import DataError

FORMAT = "emoedge-pack/1"
MANIFEST = "manifest.json"
MODALITIES = ("face", "audio")
LZMA_PRESET = 9


# -- codecs -----------------------------------------------------------------------------------


def _med_prediction(left: np.ndarray, up: np.ndarray, upleft: np.ndarray) -> np.ndarray:
    """LOCO-I's median edge detector: min(left, up) above an edge, max below one, else the
    plane through the three neighbours."""
    low, high = np.minimum(left, up), np.maximum(left, up)
    return np.where(upleft >= high, low, np.where(upleft <= low, high, left + up - upleft))


def encode_faces(faces: np.ndarray) -> bytes:
    """(N, H, W) uint8 → residuals of the median edge predictor (zero outside the image)."""
    x = np.pad(faces.astype(np.int16), ((0, 0), (1, 0), (1, 0)))
    pred = _med_prediction(x[:, 1:, :-1], x[:, :-1, 1:], x[:, :-1, :-1])
    return lzma.compress(
        ((x[:, 1:, 1:] - pred) & 0xFF).astype(np.uint8).tobytes(), preset=LZMA_PRESET
    )


def decode_faces(data: bytes, shape: Sequence[int]) -> np.ndarray:
    """The inverse of encode_faces: pixel by pixel, every face at once."""
    n, h, w = shape
    residual = np.frombuffer(lzma.decompress(data), np.uint8).reshape(n, h, w)
    residual = np.ascontiguousarray(residual.transpose(1, 2, 0)).astype(np.int16)
    x = np.zeros((h + 1, w + 1, n), np.int16)
    for r in range(1, h + 1):
        for c in range(1, w + 1):
            pred = _med_prediction(x[r, c - 1], x[r - 1, c], x[r - 1, c - 1])
            x[r, c] = (residual[r - 1, c - 1] + pred) & 0xFF
    return np.ascontiguousarray(x[1:, 1:].transpose(2, 0, 1)).astype(np.uint8)


def encode_pcm(pcm: np.ndarray) -> bytes:
    """int16 samples → zigzagged first differences (mod 2^16) as a low and a high byte plane."""
    step = np.diff(pcm.astype(np.int16), prepend=np.int16(0)).astype(np.int32)
    zigzag = ((step << 1) ^ (step >> 15)) & 0xFFFF
    planes = np.concatenate([zigzag & 0xFF, zigzag >> 8]).astype(np.uint8)
    return lzma.compress(planes.tobytes(), preset=LZMA_PRESET)


def decode_pcm(data: bytes, shape: Sequence[int]) -> np.ndarray:
    """The inverse of encode_pcm."""
    (n,) = shape
    planes = np.frombuffer(lzma.decompress(data), np.uint8).astype(np.int32)
    zigzag = planes[:n] | (planes[n:] << 8)
    step = ((zigzag >> 1) ^ -(zigzag & 1)).astype(np.int16)
    return np.cumsum(step, dtype=np.int16)  # wraps mod 2^16 as the differences did


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return lzma.compress(buffer.getvalue(), preset=LZMA_PRESET)


def decode_npy(data: bytes, shape: Sequence[int]) -> np.ndarray:
    return np.load(io.BytesIO(lzma.decompress(data)), allow_pickle=False)


CODECS = {
    "faces": (encode_faces, decode_faces),
    "pcm": (encode_pcm, decode_pcm),
    "npy": (encode_npy, decode_npy),
}


# -- writing ----------------------------------------------------------------------------------


ENCODER_ARRAY = "audio/encoder/"  # + the encoder's name (distill.speech_encoder.ENCODERS)
LEGACY_ENCODER_ARRAY = "audio/encoder"  # packs from before there were two: resemblyzer's


def _arrays(
    modality: str, decoded: Decoded, encoder_states: dict[str, np.ndarray]
) -> Iterator[tuple[str, str, np.ndarray]]:
    """(name, codec, array) of everything a modality's Decoded holds, and the speech's states
    in each encoder of `encoder_states`."""
    if modality == "face":
        yield "face/data", "faces", decoded.data
    else:
        pcm, offsets = pcm_arrays(decoded.data)
        yield "audio/pcm", "pcm", pcm
        yield "audio/offsets", "npy", offsets
        for encoder, states in encoder_states.items():
            yield ENCODER_ARRAY + encoder, "npy", states
    for key in META:
        yield f"{modality}/{key}", "npy", getattr(decoded, key)


def _in_splits(decoded: Decoded, splits: Sequence[str]) -> np.ndarray:
    return np.flatnonzero(np.isin(decoded.splits, list(splits)))


def write_pack(
    out: Path,
    faces: Decoded,
    speech: Decoded,
    sample_rate: int,
    splits: Sequence[str] = ("train", "val", "test"),
    part_mb: float = 40.0,
    sources: dict | None = None,
    encoder_states: dict[str, np.ndarray] | None = None,
) -> dict:
    """Write the samples of `splits` to the pack folder `out` (its earlier parts removed);
    returns the manifest. `encoder_states` (by encoder name, one row per clip of `speech`), when
    given, travel as audio/encoder/NAME: the speech encoders' states (distill.speech_encoder),
    so that training with --audio-encoder-kd needs no encoder where the pack is read."""
    if part_mb <= 0:
        raise ValueError("part_mb must be positive")
    chosen = {m: d.take(_in_splits(d, splits)) for m, d in (("face", faces), ("audio", speech))}
    for modality, decoded in chosen.items():
        if len(decoded) == 0:
            raise DataError(f"no {modality} samples in the split(s) {', '.join(splits)}")
    encoder_states = {
        name: np.asarray(states, np.float32)[_in_splits(speech, splits)]
        for name, states in (encoder_states or {}).items()
    }
    stream, arrays = bytearray(), {}
    for modality, decoded in chosen.items():
        for name, codec, array in _arrays(modality, decoded, encoder_states):
            data = CODECS[codec][0](array)
            arrays[name] = {
                "codec": codec,
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "offset": len(stream),
                "length": len(data),
            }
            stream += data
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*"):
        old.unlink()
    size = max(1, int(part_mb * 1e6))
    parts = []
    for k, start in enumerate(range(0, len(stream), size)):
        piece = bytes(stream[start : start + size])
        name = f"part-{k:03d}"
        (out / name).write_bytes(piece)
        parts.append(
            {"name": name, "bytes": len(piece), "sha256": hashlib.sha256(piece).hexdigest()}
        )
    manifest = {
        "format": FORMAT,
        "sample_rate": sample_rate,
        "splits": list(splits),
        "counts": {m: {s: int((d.splits == s).sum()) for s in splits} for m, d in chosen.items()},
        "sources": sources or {},
        "arrays": arrays,
        "parts": parts,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


# -- reading ----------------------------------------------------------------------------------


def is_pack(path: Path | str) -> bool:
    """True for a folder holding a pack's manifest."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(pack: Path) -> dict:
    """The manifest of a pack folder (a DataError when it is not one)."""
    try:
        manifest = json.loads((Path(pack) / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{pack}: not a readable data pack ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{pack}: not a data pack of format {FORMAT}")
    return manifest


def pack_digest(pack: Path) -> str:
    """A short key of a pack's content (its manifest holds every part's SHA-256)."""
    return hashlib.sha256((Path(pack) / MANIFEST).read_bytes()).hexdigest()[:16]


def read_parts(pack: Path, manifest: dict) -> bytes:
    """The parts joined, each checked against its size and SHA-256 (a DataError naming a
    missing or damaged part)."""
    pieces = []
    for part in manifest["parts"]:
        path = Path(pack) / part["name"]
        if not path.is_file():
            names = ", ".join(p["name"] for p in manifest["parts"])
            raise DataError(
                f"{pack}: {part['name']} is missing (a pack needs all its parts: {names})"
            )
        piece = path.read_bytes()
        if len(piece) != part["bytes"] or hashlib.sha256(piece).hexdigest() != part["sha256"]:
            raise DataError(f"{path}: damaged or from another pack (size or SHA-256 differs)")
        pieces.append(piece)
    return b"".join(pieces)


def read_pack(pack: Path, modality: str, sample_rate: int | None = None) -> Decoded:
    """The decoded faces ('face') or speech ('audio') of a pack, every split it holds; speech
    must be at `sample_rate` when one is given."""
    if modality not in MODALITIES:
        raise ValueError(f"modality {modality!r}: one of {MODALITIES}")
    manifest = read_manifest(pack)
    if modality == "audio" and sample_rate and manifest["sample_rate"] != sample_rate:
        raise DataError(
            f"{pack}: speech at {manifest['sample_rate']} Hz, the model's front end expects "
            f"{sample_rate} Hz (pack again)"
        )
    array = _reader(pack, manifest)
    meta = {key: array(f"{modality}/{key}") for key in META}
    if modality == "face":
        return Decoded(array("face/data"), **meta)
    return Decoded(waves_from_pcm(array("audio/pcm"), array("audio/offsets")), **meta)


def read_encoder_states(pack: Path) -> dict[str, np.ndarray]:
    """The speech encoders' states of the pack's clips (in read_pack's order), by encoder name;
    empty when it was packed without them."""
    manifest = read_manifest(pack)
    names = {
        name: name.removeprefix(ENCODER_ARRAY)
        for name in manifest["arrays"]
        if name.startswith(ENCODER_ARRAY)
    }
    if LEGACY_ENCODER_ARRAY in manifest["arrays"]:
        names[LEGACY_ENCODER_ARRAY] = "resemblyzer"
    if not names:
        return {}
    read = _reader(pack, manifest)
    return {encoder: read(array) for array, encoder in names.items()}


def _reader(pack: Path, manifest: dict) -> Callable[[str], np.ndarray]:
    """A function decoding one named array of the pack (its parts read and checked once)."""
    stream = read_parts(pack, manifest)

    def array(name: str) -> np.ndarray:
        spec = manifest["arrays"][name]
        data = stream[spec["offset"] : spec["offset"] + spec["length"]]
        return CODECS[spec["codec"]][1](data, spec["shape"]).astype(np.dtype(spec["dtype"]))

    return array


def describe(pack: Path, manifest: dict) -> str:
    """What a pack holds, in a few lines: samples per split, parts and their sizes."""
    lines = [
        f"{modality}: " + ", ".join(f"{n} {split}" for split, n in counts.items())
        for modality, counts in manifest["counts"].items()
    ]
    if "audio/encoder" in manifest["arrays"]:
        lines.append("speech-encoder states of every clip")
    total = sum(part["bytes"] for part in manifest["parts"])
    lines.append(f"{len(manifest['parts'])} part(s), {total / 1e6:.1f} MB in {pack}:")
    lines += [f"  {part['name']}  {part['bytes'] / 1e6:.1f} MB" for part in manifest["parts"]]
    return "\n".join(lines)
