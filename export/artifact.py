"""What every converter shares: the model I/O contract, example inputs and the manifest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edge.audio.frontend import AudioConfig
from edge.core.labels import LABELS
from edge.core.manifest import (
    OUTPUT_ROWS,
    VOICE_NORM,
    VOICE_PRIOR_FILE,
    VOICE_STATE,
    Manifest,
    TensorSpec,
    sha256_file,
    write_manifest,
)
from edge.vision.face import FaceConfig

INPUT_NAMES = ("face", "audio", "mask")
OUTPUT_NAME = "logits"


class AllLogits(torch.nn.Module):
    """The graph every artifact holds: a model's fused, face-alone and voice-alone logits
    (B, 3, 7) in one output (distill.models.EmotionModel.all_logits,
    edge.core.manifest.OUTPUT_ROWS); for a voice that adapts, also the input VOICE_NORM and
    the output VOICE_STATE (EmotionModel.all_outputs)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self,
        face: torch.Tensor,
        audio: torch.Tensor,
        mask: torch.Tensor,
        voice_norm: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if voice_norm is None:
            return self.model.all_logits(face, audio, mask)
        return self.model.all_outputs(face, audio, mask, voice_norm)


def io_names(prior: np.ndarray | None) -> tuple[list[str], list[str]]:
    """The graph's input and output names, with VOICE_NORM / VOICE_STATE for a voice that
    adapts (`prior` not None)."""
    if prior is None:
        return list(INPUT_NAMES), [OUTPUT_NAME]
    return [*INPUT_NAMES, VOICE_NORM], [OUTPUT_NAME, VOICE_STATE]


Sample = dict[str, np.ndarray]  # one model input by name, batch 1


@dataclass(frozen=True)
class Converted:
    """A converter's result: the model file, any files it needs, and its batch axis."""

    model_file: str
    extra_files: tuple[str, ...] = ()
    dynamic_batch: bool = True


@dataclass
class Job:
    """One export run's model and front end, with a scratch folder for shared intermediates
    (the fp32 ONNX graph that the ONNX and OpenVINO converters both start from)."""

    model: torch.nn.Module
    audio: AudioConfig
    face: FaceConfig
    workdir: Path
    onnx_path: Path | None = None
    voice_prior: np.ndarray | None = None  # (2, D) for a voice that adapts


# A format's converter (export.formats): the float artifact, or given calibration samples
# the int8 one, of a job in a folder.
Convert = Callable[[Job, Path, list[Sample] | None], Converted]


@dataclass(frozen=True)
class Source:
    """The checkpoint being exported and its front-end contract."""

    path: Path
    sha256: str
    arch: str
    audio: AudioConfig
    face: FaceConfig
    extra: dict = field(default_factory=dict)
    voice_prior: np.ndarray | None = None  # (2, D) for a voice that adapts


def example_inputs(
    audio: AudioConfig, face: FaceConfig, batch: int, voice_prior: np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    """Seeded inputs of the contract's shapes, both modalities present (and the prior as the
    voice's statistics, for a voice that adapts)."""
    gen = torch.Generator().manual_seed(0)
    inputs = {
        "face": torch.randn(batch, 1, face.size, face.size, generator=gen),
        "audio": torch.randn(batch, audio.num_frames, audio.feature_dim, generator=gen),
        "mask": torch.ones(batch, 2),
    }
    if voice_prior is not None:
        inputs[VOICE_NORM] = torch.from_numpy(voice_prior)
    return inputs


def tensor_specs(
    audio: AudioConfig, face: FaceConfig, dynamic_batch: bool, voice_dim: int | None = None
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Manifest inputs and outputs; the batch axis is 'batch' when dynamic, else 1; with
    `voice_dim`, those of a voice that adapts."""
    b: int | str = "batch" if dynamic_batch else 1
    inputs = (
        TensorSpec("face", (b, 1, face.size, face.size)),
        TensorSpec("audio", (b, audio.num_frames, audio.feature_dim)),
        TensorSpec("mask", (b, 2)),
    )
    outputs = (TensorSpec(OUTPUT_NAME, (b, len(OUTPUT_ROWS), len(LABELS))),)
    if voice_dim is None:
        return inputs, outputs
    return (
        (*inputs, TensorSpec(VOICE_NORM, (2, voice_dim))),
        (*outputs, TensorSpec(VOICE_STATE, (b, voice_dim))),
    )


def write_artifact(
    directory: Path,
    converted: Converted,
    source: Source,
    fmt: str,
    precision: str,
    metrics: dict | None = None,
) -> Manifest:
    """Hash the converted files (and a voice's prior, written beside them) and write the
    artifact's manifest.json."""
    prior = source.voice_prior
    extra = list(converted.extra_files)
    if prior is not None:
        np.save(directory / VOICE_PRIOR_FILE, prior, allow_pickle=False)
        extra.append(VOICE_PRIOR_FILE)
    inputs, outputs = tensor_specs(
        source.audio,
        source.face,
        converted.dynamic_batch,
        None if prior is None else prior.shape[1],
    )
    manifest = Manifest(
        model_id=f"{source.arch}-{fmt}-{precision}-{source.sha256[:8]}",
        arch=source.arch,
        format=fmt,
        precision=precision,
        model_file=converted.model_file,
        sha256=sha256_file(directory / converted.model_file),
        extra_files={name: sha256_file(directory / name) for name in extra},
        inputs=inputs,
        outputs=outputs,
        face_config=source.face.to_dict(),
        audio_config=source.audio.to_dict(),
        source={"checkpoint": str(source.path), "sha256": source.sha256},
        metrics=metrics or {},
        directory=directory,
    )
    write_manifest(manifest, directory)
    return manifest
