"""The samples int8 quantisation calibrates on: model inputs from the TRAINING split (never
the test split). (Not distill.calibrate, which fits a model's temperatures and fusion.)

Samples are drawn evenly from the face-only, audio-only, fused and one-modality-masked
pairs, so every mask combination the device sends is seen by the observers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from distill.data import load_data
from distill.pairing import EvalSet, build_eval_sets
from edge.audio.frontend import AudioConfig
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
    """n (at least 1) calibration inputs from the training split of the given corpora."""
    face_data, audio_data = load_data(faces, speech, SPLIT, audio_cfg, cache_dir)
    return draw_samples(build_eval_sets(face_data, audio_data, audio_cfg), face_cfg, n)


class LazySamples(Sequence[Sample]):
    """Calibration samples drawn on first use, once: a conversion that needs none (the dynamic
    int8 of a Whisper voice) never draws them, and the report says none were used."""

    def __init__(self, draw: Callable[[], list[Sample]]):
        self._draw = draw
        self._samples: list[Sample] | None = None

    @property
    def drawn(self) -> bool:
        """Whether a conversion asked for them."""
        return self._samples is not None

    def _get(self) -> list[Sample]:
        if self._samples is None:
            self._samples = self._draw()
        return self._samples

    def __len__(self) -> int:
        return len(self._get())

    @overload
    def __getitem__(self, i: int) -> Sample: ...

    @overload
    def __getitem__(self, i: slice) -> list[Sample]: ...

    def __getitem__(self, i: int | slice) -> Sample | list[Sample]:
        return self._get()[i]
