"""The training's device-independent parts: face normalisation and batch augmentation run on
the batch's device (the GPU when training there) and draw the same random numbers."""

from __future__ import annotations

import numpy as np
import torch

from distill.augment import augment_faces, faces_to_input, spec_augment
from edge.vision.face import FaceConfig, normalize_face


def test_faces_to_input_is_normalize_face_bitwise() -> None:
    faces = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(40, 0)
    expected = normalize_face(faces, FaceConfig(mean=0.4, std=0.3))
    got = faces_to_input(torch.from_numpy(faces), FaceConfig(mean=0.4, std=0.3))
    assert got.dtype == torch.float32 and np.array_equal(got.numpy(), expected)


def test_augmentation_stays_on_the_batch_device_with_the_same_random_draws() -> None:
    """On the 'meta' device (shapes only) any CPU tensor mixed into the computation raises,
    as a CPU tensor on a GPU batch would; the generator advances as on the CPU."""
    cfg = FaceConfig()
    results = {}
    for device in ("cpu", "meta"):
        gen = torch.Generator().manual_seed(7)
        faces = faces_to_input(torch.zeros(6, 48, 48, dtype=torch.uint8, device=device), cfg)
        x = augment_faces(faces, gen, 0.8)
        audio = spec_augment(torch.ones(6, 298, 39, device=device), gen)
        assert x.device.type == device and x.shape == (6, 1, 48, 48)
        assert audio.device.type == device and audio.shape == (6, 298, 39)
        results[device] = torch.rand(3, generator=gen)
    assert torch.equal(results["cpu"], results["meta"])


def test_models_train_under_bf16_autocast() -> None:
    """What fit() does on a GPU, with the CPU's autocast: every architecture's forward pass,
    distillation loss and backward pass mix bf16 and fp32 without a dtype error, and the
    audio LSTM runs in fp32."""
    from distill.models import build_model, distillation_loss
    from tests.fixtures_export import TINY

    gen = torch.Generator().manual_seed(0)
    faces = faces_to_input(torch.randint(0, 256, (4, 48, 48), dtype=torch.uint8), FaceConfig())
    inputs = (augment_faces(faces, gen), torch.randn(4, 298, 39), torch.ones(4, 2))
    labels = torch.tensor([0, 1, 2, 3])
    teacher = build_model("teacher", TINY["teacher"])
    for config in (TINY["student"], {**TINY["student"], "fusion": "late"}):
        student = build_model("student", config)
        with torch.autocast("cpu", torch.bfloat16):
            soft = teacher(*inputs)
            loss = distillation_loss(student(*inputs), soft, labels, 4.0, 0.7, 0.1)
            assert teacher.audio(inputs[1]).dtype == torch.float32
        loss.backward()
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
