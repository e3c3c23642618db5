"""The samples int8 quantisation calibrates on: model inputs from the TRAINING split (never
the test split). (Not distill.calibrate, which fits a model's temperatures and fusion.)

Samples are drawn evenly from the face-only, audio-only, fused and one-modality-masked
pairs, so every mask combination the device sends is seen by the observers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distill.data import load_data
from distill.pairing import EvalSet, build_eval_sets
from edge.audio.frontend import AudioConfig
from edge.core.errors import DataError
from edge.vision.face import FaceConfig, normalize_face
from export.artifact import Sample

SPLIT = "train"


def draw_samples(sets: list[EvalSet], face_cfg: FaceConfig, n: int, seed: int = 0) -> list[Sample]:
    """About n batch-1 model inputs spread evenly over the sets, seeded."""
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []
    per_set = max(1, n // len(sets))
    for es in sets:
        for i in np.sort(rng.choice(len(es), min(per_set, len(es)), replace=False)):
            samples.append(
                {
                    "face": normalize_face(es.faces[i : i + 1], face_cfg),
                    "audio": np.array(es.audio[i : i + 1], dtype=np.float32),
                    "mask": es.mask[i : i + 1].astype(np.float32),
                }
            )
    return samples


def calibration_samples(
    faces: Path,
    speech: Path | list[Path],
    audio_cfg: AudioConfig,
    face_cfg: FaceConfig,
    n: int,
    cache_dir: Path | None = None,
) -> list[Sample]:
    """n calibration inputs from the training split of the given corpora."""
    if n < 1:
        raise DataError(f"--calib-samples must be at least 1 (got {n})")
    face_data, audio_data = load_data(faces, speech, SPLIT, audio_cfg, cache_dir)
    return draw_samples(build_eval_sets(face_data, audio_data, audio_cfg), face_cfg, n)
