"""Training stages: face-only pre-training, --init, --freeze-face and KD without the face-only
samples; tiny models and tiny generated corpora."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distill.checkpoint import load_checkpoint
from distill.config import TrainConfig
from distill.models import build_model, distillation_loss
from distill.pretrain import class_weights, face_only_logits
from distill.train import batch_loss
from tests.fixtures_export import TINY, make_checkpoint, run_emoedge
from tests.tiny_corpora import write_fer_folders, write_ravdess


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> list[str]:
    """The data options of `emoedge distill` for tiny corpora."""
    root = tmp_path_factory.mktemp("tiny")
    return [
        "--faces",
        str(write_fer_folders(root / "fer")),
        "--speech",
        str(write_ravdess(root / "rav", actors=(1, 19, 21), sr=16000)),
        "--cache-dir",
        str(root / "cache"),
    ]


@pytest.mark.parametrize("arch", ["student", "teacher"])
def test_face_only_logits_are_the_models_face_only_output(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, TINY[arch]).eval()
    faces = torch.randn(5, 1, 48, 48)
    audio = torch.randn(5, 298, 39)
    mask = torch.tensor([[1.0, 0.0]]).expand(5, 2)
    with torch.no_grad():
        torch.testing.assert_close(face_only_logits(model, faces), model(faces, audio, mask))


def test_class_weights() -> None:
    labels = np.array([0] * 8 + [1] * 2 + [3] * 2)
    assert torch.equal(class_weights(labels, 0.0)[[0, 1, 3]], torch.ones(3))
    w = class_weights(labels, 1.0)
    counts = torch.tensor([8.0, 2.0, 0, 2.0, 0, 0, 0])
    per_class = w * counts
    assert torch.allclose(per_class[[0, 1, 3]], per_class[0].expand(3))  # balanced
    assert w[2] == 0 and w[4:].eq(0).all()  # absent classes
    assert torch.isclose((w * counts).sum() / counts.sum(), torch.tensor(1.0))  # mean 1


def test_batch_loss_skips_the_teacher_on_face_only_samples() -> None:
    torch.manual_seed(0)
    teacher = build_model("teacher", TINY["teacher"]).eval()
    inputs = (torch.randn(6, 1, 48, 48), torch.randn(6, 298, 39), torch.ones(6, 2))
    inputs[2][:2, 1] = 0  # two face-only samples
    logits, labels = torch.randn(6, 7), torch.tensor([0, 1, 2, 3, 4, 5])
    cfg = TrainConfig(label_smoothing=0.0)
    with torch.no_grad():
        teacher_logits = teacher(*inputs)

    def kd(sl: slice) -> torch.Tensor:
        return distillation_loss(logits[sl], teacher_logits[sl], labels[sl], 4.0, 0.7)

    torch.testing.assert_close(batch_loss(logits, labels, teacher, inputs, cfg), kd(slice(None)))
    cfg.kd_face_only = False
    ce = torch.nn.functional.cross_entropy(logits[:2], labels[:2])
    expected = (2 * ce + 4 * kd(slice(2, None))) / 6
    torch.testing.assert_close(batch_loss(logits, labels, teacher, inputs, cfg), expected)
    face_only = tuple(x[:2] for x in inputs)
    torch.testing.assert_close(batch_loss(logits[:2], labels[:2], teacher, face_only, cfg), ce)
    plain = batch_loss(logits, labels, None, inputs, cfg)
    torch.testing.assert_close(plain, torch.nn.functional.cross_entropy(logits, labels))


def face_state(path) -> dict[str, torch.Tensor]:
    model, _ = load_checkpoint(path)
    return {k: v for k, v in model.state_dict().items() if k.startswith("face.")}


def test_face_stage_resumes_and_the_fused_stage_starts_from_it(tiny, tmp_path) -> None:
    init = make_checkpoint(tmp_path / "init.pt", "student")
    face = tmp_path / "face"
    common = ["--arch", "student", "--batch-size", "8", "--workers", "0", *tiny]
    stage = ["--stage", "face", "--out", face, "--class-balance", "0.5", "--init", init]
    assert run_emoedge("distill", *common, *stage, "--epochs", "2") == 0
    assert run_emoedge("distill", *common, *stage, "--epochs", "3", "--resume") == 0
    history = json.loads((face / "history.json").read_text())
    assert [(h["epoch"], h["stage"]) for h in history] == [(1, "face"), (2, "face"), (3, "face")]
    _, meta = load_checkpoint(face / "best.pt")
    assert meta["train_config"]["stage"] == "face" and "face_only" in meta["metrics"]["val"]

    fused = tmp_path / "fused"
    teacher = make_checkpoint(tmp_path / "teacher.pt", "teacher")
    args = ["--init", face / "best.pt", "--freeze-face", "--out", fused, "--epochs", "1"]
    args += ["--teacher", teacher, "--no-kd-face-only"]
    assert run_emoedge("distill", *common, *args) == 0
    before, after = face_state(face / "best.pt"), face_state(fused / "best.pt")
    assert before.keys() == after.keys()
    for name, value in before.items():  # weights and BatchNorm statistics
        assert torch.equal(value, after[name]), name


def test_init_from_another_architecture_is_a_usage_error(tiny, tmp_path, capsys) -> None:
    teacher = make_checkpoint(tmp_path / "teacher.pt", "teacher")
    code = run_emoedge("distill", "--arch", "student", "--init", teacher, "--out", tmp_path, *tiny)
    assert code == 2
    assert "is a teacher checkpoint, not student" in capsys.readouterr().err
