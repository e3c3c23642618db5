"""Export fixtures: tiny random student/teacher checkpoints, and one export of the student to
every format (fp32 + int8) on the shared tiny corpora (tests.tiny_corpora), done once per test
session (TFLite is slow)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.tiny_corpora import Corpora

TINY = {
    "student": {
        "face_stem": 8,
        "face_blocks": [[16, 2], [16, 1]],
        "visual_dim": 16,
        "face_flip_average": True,  # as the shipped student
        "audio_stem": 8,
        "audio_blocks": [[16, 2]],
        "attn_dim": 8,
        "head_hidden": 16,
        "fusion": "late",
    },
    "teacher": {
        "face_widths": [8, 16],
        "face_hidden": 32,
        "visual_dim": 16,
        "lstm_hidden": 8,
        "lstm_layers": 1,
        "attn_dim": 8,
        "head_hidden": 16,
    },
}
FORMATS = "onnx,openvino,tflite"
ARTIFACTS = (
    "onnx-fp32",
    "onnx-int8",
    "openvino-fp16",
    "openvino-int8",
    "tflite-fp32",
    "tflite-int8",
)


@dataclass(frozen=True)
class Exported:
    out: Path
    checkpoint: Path
    exit_code: int


def make_checkpoint(
    path: Path, arch: str, seed: int = 0, window_s: float | None = None, **config: object
) -> Path:
    """A randomly initialised tiny model of `arch` (TINY, updated by `config`), saved as an
    emoedge checkpoint (fp32) that reads audio windows of `window_s` (default: its front
    end's)."""
    import torch

    from distill.checkpoint import save_checkpoint
    from distill.models import audio_config, build_model
    from edge.vision.face import FaceConfig

    torch.manual_seed(seed)
    model = build_model(arch, TINY[arch] | config).eval()
    audio = audio_config(model)
    if window_s is not None:
        audio = replace(audio, window_s=window_s)
    save_checkpoint(path, model, arch, audio, FaceConfig(), half=False)
    return path


def run_emoedge(*args: str) -> int:
    """`emoedge ARGS` in this process (the real CLI path); returns its exit code."""
    from edge.cli import main

    return main([str(a) for a in args])


def run_without_torch(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run python `code` in a fresh interpreter (repo on the path); it must not load torch."""
    script = code + "\nimport sys\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.fixture(scope="session")
def student_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("student") / "student.pt", "student")


@pytest.fixture(scope="session")
def exported_student(
    tmp_path_factory: pytest.TempPathFactory, tiny_corpora: Corpora, student_checkpoint: Path
) -> Exported:
    """The tiny student in every format and precision, bounds relaxed (it is random)."""
    out = tmp_path_factory.mktemp("export")
    code = run_emoedge(
        "export",
        student_checkpoint,
        "--formats",
        FORMATS,
        "--int8",
        "--calib-samples",
        "12",
        "--out",
        out,
        "--max-int8-drop",
        "100",
        "--min-agreement",
        "0",
        *tiny_corpora.args(),
    )
    return Exported(out, student_checkpoint, code)
