"""The data pack (distill.pack, `emoedge distill pack`): lossless codecs, parts, and training
data read from a pack identical to the corpus folders'."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distill.cache import Decoded
from distill.data import face_corpus, load_faces, load_speech_split, speech_corpus
from distill.pack import (
    decode_faces,
    decode_pcm,
    encode_faces,
    encode_pcm,
    read_encoder_states,
    read_pack,
    write_pack,
)
from distill.speech_encoder import ENCODERS, encoder_states
from edge.audio.frontend import AudioConfig
from edge.cli import main
from edge.core.errors import DataError, UsageError
from tests.tiny_corpora import Corpora


def test_face_codec_is_lossless_on_noise_and_extremes() -> None:
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (5, 48, 48)).astype(np.uint8)
    faces[1] = 255
    faces[2, ::2] = 0  # stripes: every edge case of the predictor
    faces[3] = np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1))
    assert np.array_equal(decode_faces(encode_faces(faces), faces.shape), faces)


def test_smooth_faces_compress_better_than_lzma_alone() -> None:
    import lzma

    y, x = np.mgrid[0:48, 0:48]
    faces = np.stack([(100 + 40 * np.sin(x / (4 + k)) + y).astype(np.uint8) for k in range(20)])
    assert len(encode_faces(faces)) < 0.8 * len(lzma.compress(faces.tobytes(), preset=9))


def test_pcm_codec_is_lossless_where_differences_wrap() -> None:
    rng = np.random.default_rng(1)
    pcm = np.concatenate(
        [
            np.array([-32768, 32767, -32768, 0, 32767, 32767, -1], np.int16),
            rng.integers(-32768, 32768, 1000).astype(np.int16),
        ]
    )
    assert np.array_equal(decode_pcm(encode_pcm(pcm), pcm.shape), pcm)


def assert_same(a: Decoded, b: Decoded) -> None:
    for key in ("labels", "splits", "persons", "corpora", "votes"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key
    if isinstance(a.data, np.ndarray):
        assert a.data.dtype == b.data.dtype and np.array_equal(a.data, b.data)
    else:
        pairs = zip(a.data, b.data, strict=True)
        assert all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in pairs)


@pytest.fixture(scope="module")
def packed(tiny_corpora: Corpora, tmp_path_factory: pytest.TempPathFactory):
    """The tiny corpora (faces with FER+ votes, RAVDESS and EmoDB) packed through the CLI in
    parts of at most 50 kB."""
    root = tmp_path_factory.mktemp("pack")
    faces = root / "fer2013"
    import shutil

    shutil.copytree(tiny_corpora.faces, faces)
    rows = ["file,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"]
    for k, path in enumerate(sorted(faces.rglob("*.png"))):
        votes = [(k + c) % 4 for c in range(10)]
        rows.append(f"{path.relative_to(faces).as_posix()},{','.join(map(str, votes))}")
    (faces / "ferplus.csv").write_text("\n".join(rows) + "\n")
    speech = [tiny_corpora.speech, tiny_corpora.emodb]
    pack = root / "pack"
    cache = str(tiny_corpora.cache)
    args = ["distill", "pack", "--out", str(pack), "--faces", str(faces), "--part-mb", "0.05"]
    assert main([*args, "--speech", *map(str, speech), "--cache-dir", cache]) == 0
    return faces, speech, pack


def test_pack_holds_the_corpora_exactly_in_parts_of_the_given_size(packed, tiny_corpora) -> None:
    faces, speech, pack = packed
    manifest = json.loads((pack / "manifest.json").read_text())
    assert len(manifest["parts"]) > 2
    assert all(p["bytes"] <= 50_000 for p in manifest["parts"])
    assert manifest["counts"]["face"] == {"train": 28, "val": 14, "test": 14}
    assert_same(read_pack(pack, "face"), face_corpus(faces, tiny_corpora.cache))
    audio = speech_corpus(speech, AudioConfig(), tiny_corpora.cache)
    assert_same(read_pack(pack, "audio", 16000), audio)
    assert read_pack(pack, "face").votes.any()


def test_training_data_from_a_pack_is_the_folders(packed, tiny_corpora, tmp_path) -> None:
    faces, speech, pack = packed
    cfg, cache = AudioConfig(), tiny_corpora.cache
    for split in ("train", "val", "test"):
        from_pack = load_faces(pack, split, tmp_path)  # decoded into an empty cache …
        assert_same(from_pack, load_faces(faces, split, cache, 0))
        assert_same(load_faces(pack, split, tmp_path), from_pack)  # … and read from it
        assert_same(load_faces(pack, split, tmp_path, 5), load_faces(faces, split, cache, 5))
        assert_same(load_speech_split([pack], split, cfg, tmp_path),
                    load_speech_split(speech, split, cfg, cache))  # fmt: skip
    assert len(list(tmp_path.glob("pack-*.npz"))) == 2


def test_the_pack_brings_the_speech_encoder_states_along(packed, tiny_corpora, tmp_path) -> None:
    """Read where nothing was encoded, the pack's states in every encoder fill the cache's
    store, so training with --audio-encoder-kd there encodes nothing (no encoder needed)."""
    _, speech, pack = packed
    waves = speech_corpus(speech, AudioConfig(), tiny_corpora.cache).data
    packed_states = read_encoder_states(pack)
    assert sorted(packed_states) == sorted(ENCODERS)
    load_speech_split([pack], "train", AudioConfig(), tmp_path)
    stores = sorted(tmp_path.glob("speech-encoder-states-*.npz"))
    assert len(stores) == len(ENCODERS)
    for encoder in ENCODERS:
        expected = encoder_states(waves, 16000, tiny_corpora.cache, encoder)  # stored at packing
        assert expected.shape == (len(waves), ENCODERS[encoder].dim)
        assert np.array_equal(packed_states[encoder], expected)
        assert np.array_equal(encoder_states(waves, 16000, tmp_path, encoder), expected)
    assert sorted(tmp_path.glob("speech-encoder-states-*.npz")) == stores  # nothing encoded


def test_a_pack_from_before_the_second_encoder_gives_resemblyzers_states(packed, tmp_path) -> None:
    """Packs written when there was one encoder hold its states as audio/encoder."""
    import json
    import shutil

    _, _, pack = packed
    old = tmp_path / "old"
    shutil.copytree(pack, old)
    manifest = json.loads((old / "manifest.json").read_text())
    arrays = manifest["arrays"]
    arrays["audio/encoder"] = arrays.pop("audio/encoder/resemblyzer")
    del arrays["audio/encoder/whisper-base"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    states = read_encoder_states(old)
    assert list(states) == ["resemblyzer"]
    assert np.array_equal(states["resemblyzer"], read_encoder_states(pack)["resemblyzer"])


def test_a_missing_or_damaged_part_is_a_data_error(packed, tmp_path) -> None:
    import shutil

    _, _, pack = packed
    copy = tmp_path / "pack"
    shutil.copytree(pack, copy)
    (copy / "part-001").unlink()
    with pytest.raises(DataError, match="part-001 is missing"):
        read_pack(copy, "face")
    shutil.copy(pack / "part-001", copy / "part-001")
    data = bytearray((copy / "part-002").read_bytes())
    data[10] ^= 1
    (copy / "part-002").write_bytes(bytes(data))
    with pytest.raises(DataError, match="part-002: damaged"):
        read_pack(copy, "audio")
    with pytest.raises(DataError, match="speech at 16000 Hz"):
        read_pack(pack, "audio", 8000)


def test_a_pack_of_some_splits_and_misuse(tiny_corpora: Corpora, tmp_path, capsys) -> None:
    faces = face_corpus(tiny_corpora.faces, tiny_corpora.cache)
    audio = speech_corpus([tiny_corpora.speech], AudioConfig(), tiny_corpora.cache)
    pack = tmp_path / "pack"
    manifest = write_pack(pack, faces, audio, 16000, ("train", "val"))
    assert manifest["counts"]["audio"] == {"train": 7, "val": 7}
    assert len(manifest["parts"]) == 1
    assert read_encoder_states(pack) == {}  # packed without them
    with pytest.raises(DataError, match="no faces in the 'test' split"):
        load_faces(pack, "test", tmp_path)
    with pytest.raises(UsageError, match="stands alone"):
        speech_corpus([pack, tiny_corpora.emodb], AudioConfig(), tmp_path)
    assert main(["distill", "pack", "--splits", "train,dev", "--out", str(tmp_path)]) == 2
    assert "--splits 'train,dev'" in capsys.readouterr().err
    with pytest.raises(DataError, match="not a readable data pack"):
        read_pack(tmp_path, "face")
