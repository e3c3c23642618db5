"""The artifact contract: `manifest.json` beside every exported model file.

The daemon reads nothing else to know how to feed a model: label order, input and output
tensors, face and audio front-end parameters, precision, the sha256 of every file, the source
checkpoint and the metrics measured at export. `load_manifest` refuses a manifest that is
missing or invalid, or whose files do not match their hashes, with a `ModelError`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from edge import __version__
from edge.audio.frontend import AudioConfig
from edge.core.errors import ModelError
from edge.core.labels import LABELS
from edge.core.untrusted_json import decode_json
from edge.vision.face import FaceConfig

SCHEMA_VERSION = 2
MAX_DEPTH = 16  # a manifest nests 4 deep; anything far deeper is refused before parsing
MANIFEST_NAME = "manifest.json"
# The rows of the model's one output, (batch, 3, classes): what the model fused from its inputs,
# the face's own prediction and the voice's own (a row whose modality is masked means nothing).
OUTPUT_ROWS = ("fused", "face", "voice")
# The models bundled with emoedge by name (edge/models/<name>): the default, whose voice runs
# Whisper base's first blocks (ONNX), and the lite student (~0.3 M weights; ONNX, OpenVINO and
# TFLite) for the smallest boards or where the voice matters less (MODEL_CARD.md)
BUNDLED_MODELS = ("default", "lite")
# A model whose voice adapts to where it is deployed (edge.core.voice_norm) takes a fourth
# input, the statistics (2, D) its voice's mean steps are standardised by, gives those mean
# steps (batch, D) as a second output, and ships the training corpora's statistics (the prior)
# beside the model file.
VOICE_NORM = "voice_norm"
VOICE_STATE = "voice_state"
VOICE_PRIOR_FILE = "voice_prior.npy"


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, shape ('batch' for the dynamic axis) and dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class Manifest:
    """A validated manifest; `directory` is the folder that holds it and the model files."""

    model_id: str
    arch: str
    format: str
    precision: str
    model_file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    face_config: dict[str, Any]
    audio_config: dict[str, Any]
    source: dict[str, str]
    labels: tuple[str, ...] = LABELS
    extra_files: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    emoedge_version: str = __version__
    directory: Path = Path(".")

    @property
    def audio(self) -> AudioConfig:
        return AudioConfig(**self.audio_config)

    @property
    def face(self) -> FaceConfig:
        return FaceConfig.from_dict(self.face_config)

    @property
    def model_path(self) -> Path:
        return self.directory / self.model_file

    @property
    def adapts_voice(self) -> bool:
        """True for a model whose voice is standardised by the deployment's statistics."""
        return any(t.name == VOICE_NORM for t in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (without `directory`)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "model_id": self.model_id,
            "arch": self.arch,
            "format": self.format,
            "precision": self.precision,
            "model_file": self.model_file,
            "sha256": self.sha256,
            "extra_files": dict(self.extra_files),
            "labels": list(self.labels),
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "face": dict(self.face_config),
            "audio": dict(self.audio_config),
            "source": dict(self.source),
            "metrics": self.metrics,
            "created": self.created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "emoedge_version": self.emoedge_version,
        }


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema of the current manifest version (edge/schemas/manifest.schema.json)."""
    text = resources.files("edge").joinpath("schemas/manifest.schema.json").read_text()
    return json.loads(text)


def manifest_path(path_or_dir: str | Path) -> Path:
    """The manifest of an artifact given as its folder, its manifest or its model file."""
    path = Path(path_or_dir).expanduser()
    if path.is_dir():
        return path / MANIFEST_NAME
    if path.name == MANIFEST_NAME:
        return path
    return path.parent / MANIFEST_NAME


def validate(data: Any, where: str = "manifest") -> None:
    """Raise ModelError naming the first key that breaks the schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        key = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ModelError(f"{where}: invalid at '{key}': {error.message}")


def _check_file(directory: Path, name: str, expected: str, where: str) -> None:
    path = directory / name
    if not path.is_file():
        raise ModelError(f"{where}: model file {name} is missing from {directory}")
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(
            f"{where}: sha256 of {name} is {actual[:12]}…, the manifest says {expected[:12]}…; "
            "the file was changed or damaged after export"
        )


def _check_shapes(data: dict[str, Any], where: str) -> None:
    """The tensors must be what the face and audio parameters produce: face (B, 1, size, size),
    audio (B, frames, features), mask (B, 2), output (B, 3, classes); and for a voice that
    adapts, voice_norm (2, D), voice_state (B, D) and the prior's file."""
    try:
        audio, face = AudioConfig(**data["audio"]), FaceConfig.from_dict(data["face"])
        expected = {
            "input 1 (face)": ("batch", 1, face.size, face.size),
            "input 2 (audio)": ("batch", audio.num_frames, audio.feature_dim),
            "input 3 (mask)": ("batch", 2),
            "output": ("batch", len(OUTPUT_ROWS), len(LABELS)),
        }
    except (TypeError, ValueError, ArithmeticError) as error:
        raise ModelError(f"{where}: face/audio parameters do not fit together ({error})") from None
    inputs, outputs = data["inputs"], data["outputs"]
    for (what, shape), tensor in zip(expected.items(), [*inputs[:3], outputs[0]], strict=True):
        if tuple(tensor["shape"][1:]) != shape[1:]:
            raise ModelError(
                f"{where}: {what} '{tensor['name']}' has shape {tensor['shape']}; its face and "
                f"audio parameters make it {list(shape)}"
            )
    if len(inputs) == 3 and len(outputs) == 1:
        return
    if len(inputs) != 4 or len(outputs) != 2:
        raise ModelError(f"{where}: {VOICE_NORM} and {VOICE_STATE} come together, or neither")
    norm, state = inputs[3], outputs[1]
    if (norm["name"], state["name"]) != (VOICE_NORM, VOICE_STATE):
        raise ModelError(
            f"{where}: input 4 and output 2 are {VOICE_NORM} and {VOICE_STATE}, "
            f"not {norm['name']} and {state['name']}"
        )
    if len(norm["shape"]) != 2 or norm["shape"][0] != 2 or state["shape"][1:] != norm["shape"][1:]:
        raise ModelError(
            f"{where}: {VOICE_NORM} {norm['shape']} must be (2, D) and {VOICE_STATE} "
            f"{state['shape']} (batch, D)"
        )
    if VOICE_PRIOR_FILE not in data.get("extra_files", {}):
        raise ModelError(f"{where}: a model whose voice adapts ships {VOICE_PRIOR_FILE}")


def load_manifest(path_or_dir: str | Path) -> Manifest:
    """Read, validate and verify an artifact's manifest (schema, labels, file hashes)."""
    path = manifest_path(path_or_dir)
    if not path.is_file():
        raise ModelError(f"no {MANIFEST_NAME} found for model {path_or_dir} (looked at {path})")
    try:
        data = decode_json(path.read_bytes(), max_depth=MAX_DEPTH)
    except (OSError, ValueError, RecursionError) as error:
        raise ModelError(f"{path}: not readable JSON ({error})") from None
    if isinstance(data, dict) and data.get("schema_version") != SCHEMA_VERSION:
        raise ModelError(
            f"{path}: schema_version {data.get('schema_version')!r} is not supported "
            f"(this emoedge reads version {SCHEMA_VERSION}; version 1 artifacts had one fused "
            "output: export the checkpoint again with `emoedge export`)"
        )
    validate(data, str(path))
    if tuple(data["labels"]) != LABELS:
        raise ModelError(f"{path}: label order {data['labels']} differs from {list(LABELS)}")
    _check_shapes(data, str(path))
    directory = path.parent
    _check_file(directory, data["model_file"], data["sha256"], str(path))
    for name, digest in data.get("extra_files", {}).items():
        _check_file(directory, name, digest, str(path))
    return Manifest(
        model_id=data["model_id"],
        arch=data["arch"],
        format=data["format"],
        precision=data["precision"],
        model_file=data["model_file"],
        sha256=data["sha256"],
        inputs=tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in data["inputs"]),
        outputs=tuple(
            TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in data["outputs"]
        ),
        face_config=data["face"],
        audio_config=data["audio"],
        source=data["source"],
        labels=tuple(data["labels"]),
        extra_files=data.get("extra_files", {}),
        metrics=data["metrics"],
        created=data["created"],
        emoedge_version=data["emoedge_version"],
        directory=directory,
    )


def write_manifest(manifest: Manifest, directory: Path) -> Path:
    """Validate and write `manifest` as DIRECTORY/manifest.json."""
    data = manifest.to_dict()
    validate(data, f"manifest for {directory}")
    path = Path(directory) / MANIFEST_NAME
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
