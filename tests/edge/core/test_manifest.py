"""The manifest contract: schema, round trip, and refusal of missing, invalid or tampered files."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from edge.audio.frontend import AudioConfig
from edge.core.errors import ModelError
from edge.core.labels import LABELS
from edge.core.manifest import (
    Manifest,
    TensorSpec,
    load_manifest,
    schema,
    sha256_file,
    write_manifest,
)
from edge.vision.face import FaceConfig


def make_artifact(directory: Path) -> Manifest:
    """A model file with extra weights and a valid manifest (the runtime never loads it here)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.xml").write_bytes(b"<net/>")
    (directory / "model.bin").write_bytes(bytes(range(256)))
    manifest = Manifest(
        model_id="student-openvino-int8-0123abcd",
        arch="student",
        format="openvino",
        precision="int8",
        model_file="model.xml",
        sha256=sha256_file(directory / "model.xml"),
        extra_files={"model.bin": sha256_file(directory / "model.bin")},
        inputs=(
            TensorSpec("face", ("batch", 1, 48, 48)),
            TensorSpec("audio", ("batch", 298, 39)),
            TensorSpec("mask", ("batch", 2)),
        ),
        outputs=(TensorSpec("logits", ("batch", 3, 7)),),
        face_config=FaceConfig(margin=0.2).to_dict(),
        audio_config=AudioConfig(vad_threshold_dbfs=-50.0).to_dict(),
        source={"checkpoint": "runs/student/best.pt", "sha256": "ab" * 32},
        metrics={"agreement": 99.5},
        directory=directory,
    )
    write_manifest(manifest, directory)
    return manifest


def edit(directory: Path, **changes) -> None:
    path = directory / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_round_trip_exposes_the_front_end_configs(tmp_path: Path) -> None:
    written = make_artifact(tmp_path / "a")
    for where in (tmp_path / "a", tmp_path / "a" / "manifest.json", tmp_path / "a" / "model.xml"):
        loaded = load_manifest(where)
        assert loaded.to_dict() | {"created": ""} == written.to_dict() | {"created": ""}
    assert loaded.audio == AudioConfig(vad_threshold_dbfs=-50.0)
    assert loaded.face == FaceConfig(margin=0.2)
    assert loaded.labels == LABELS
    assert loaded.precision == "int8" and loaded.model_id.startswith("student-openvino")
    assert loaded.model_path == tmp_path / "a" / "model.xml"
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["schema_version"] == 2


def test_a_manifest_from_before_the_lift_crops_around_the_box_centre(tmp_path: Path) -> None:
    """Artifacts exported before the crop's centre was lifted keep the framing they were made
    with; a new contract is lifted by default."""
    make_artifact(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    face = {k: v for k, v in data["face"].items() if k != "lift"}
    edit(tmp_path, face=face)
    assert load_manifest(tmp_path).face == FaceConfig(margin=0.2, lift=0.0)
    assert FaceConfig().lift > 0


def test_schema_lists_exactly_the_front_end_fields() -> None:
    props = schema()["properties"]
    assert set(props["audio"]["properties"]) == {f.name for f in fields(AudioConfig)}
    assert set(props["face"]["properties"]) == {f.name for f in fields(FaceConfig)}
    # `features` came later: a manifest without it (MFCCs) is as valid as before
    assert set(props["audio"]["required"]) == {f.name for f in fields(AudioConfig)} - {"features"}


def test_missing_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"no manifest\.json"):
        load_manifest(tmp_path)


def test_unreadable_json_is_refused(tmp_path: Path) -> None:
    make_artifact(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON"):
        load_manifest(tmp_path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schema_version": 1}, "schema_version 1 is not supported"),
        ({"precision": "int4"}, "'precision'"),
        ({"sha256": "xyz"}, "'sha256'"),
        ({"model_file": "../escape.onnx"}, "'model_file'"),
        ({"audio": {"sample_rate": 16000}}, "'audio'"),
        (
            {"inputs": [{"name": "face", "shape": [0, 1], "dtype": "float32"}] * 3},
            r"inputs/\d/shape/0",
        ),
        (
            {"inputs": [{"name": "face", "shape": ["batch", 1], "dtype": "float32"}] * 2},
            "'inputs'.*too short",
        ),
        ({"face": {"size": 100000, "mean": 0.5, "std": 0.25, "margin": 0.1}}, "'face/size'"),
        ({"surprise": 1}, "surprise"),
        ({"labels": list(reversed(LABELS))}, "label order"),
    ],
)
def test_invalid_manifest_is_refused_naming_the_key(
    tmp_path: Path, changes: dict, message: str
) -> None:
    make_artifact(tmp_path)
    edit(tmp_path, **changes)
    with pytest.raises(ModelError, match=message):
        load_manifest(tmp_path)


def test_missing_key_is_named(tmp_path: Path) -> None:
    make_artifact(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    del data["face"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="'face' is a required property"):
        load_manifest(tmp_path)


@pytest.mark.parametrize("name", ["model.xml", "model.bin"])
def test_tampered_model_file_is_refused(tmp_path: Path, name: str) -> None:
    make_artifact(tmp_path)
    with (tmp_path / name).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelError, match=f"sha256 of {name} .* changed or damaged"):
        load_manifest(tmp_path)


def test_missing_model_file_is_refused(tmp_path: Path) -> None:
    make_artifact(tmp_path)
    (tmp_path / "model.bin").unlink()
    with pytest.raises(ModelError, match=r"model file model\.bin is missing"):
        load_manifest(tmp_path)


def test_writing_an_invalid_manifest_fails(tmp_path: Path) -> None:
    manifest = make_artifact(tmp_path)
    bad = Manifest(**{**manifest.__dict__, "format": "pickle"})
    with pytest.raises(ModelError, match="'format'"):
        write_manifest(bad, tmp_path)


VOICE_NORM = {"name": "voice_norm", "shape": [2, 512], "dtype": "float32"}
VOICE_STATE = {"name": "voice_state", "shape": ["batch", 512], "dtype": "float32"}


def adapting(directory: Path, extra_files: dict | None = None, **tensors) -> None:
    """The artifact's manifest turned into an adapting voice's (or a broken one)."""
    data = json.loads((directory / "manifest.json").read_text())
    edit(
        directory,
        inputs=[*data["inputs"], tensors.get("norm", VOICE_NORM)],
        outputs=[*data["outputs"], tensors.get("state", VOICE_STATE)],
        extra_files={**data["extra_files"], **(extra_files or {})},
    )


def test_a_voice_that_adapts_declares_its_statistics_state_and_prior(tmp_path: Path) -> None:
    make_artifact(tmp_path)
    (tmp_path / "voice_prior.npy").write_bytes(b"prior")
    adapting(tmp_path, {"voice_prior.npy": sha256_file(tmp_path / "voice_prior.npy")})
    assert load_manifest(tmp_path).adapts_voice
    assert not make_artifact(tmp_path / "plain").adapts_voice


@pytest.mark.parametrize(
    ("tensors", "prior", "message"),
    [
        ({}, False, "ships voice_prior.npy"),
        ({"norm": VOICE_NORM | {"shape": [3, 512]}}, True, r"must be \(2, D\)"),
        ({"state": VOICE_STATE | {"shape": ["batch", 256]}}, True, r"must be \(2, D\)"),
        ({"norm": VOICE_NORM | {"name": "stats"}}, True, "not stats and voice_state"),
    ],
)
def test_a_broken_adapting_voice_is_refused(
    tmp_path: Path, tensors: dict, prior: bool, message: str
) -> None:
    make_artifact(tmp_path)
    (tmp_path / "voice_prior.npy").write_bytes(b"prior")
    extra = {"voice_prior.npy": sha256_file(tmp_path / "voice_prior.npy")} if prior else {}
    adapting(tmp_path, extra, **tensors)
    with pytest.raises(ModelError, match=message):
        load_manifest(tmp_path)


def test_statistics_without_a_state_output_are_refused(tmp_path: Path) -> None:
    make_artifact(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    edit(tmp_path, inputs=[*data["inputs"], VOICE_NORM])
    with pytest.raises(ModelError, match="come together"):
        load_manifest(tmp_path)
