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
