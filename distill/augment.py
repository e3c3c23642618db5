"""Batch augmentation in torch: face geometry and photometry, modality dropout, SpecAugment.

The batches may live on any device (the GPU when training there): the random numbers are drawn
from the caller's generator, on the CPU, and only the per-sample parameters move to the
batch's device, so a seed gives the same augmentation on every device."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from edge.vision.face import FaceConfig


def faces_to_input(faces_u8: torch.Tensor, cfg: FaceConfig) -> torch.Tensor:
    """uint8 (B, 48, 48) → normalised float (B, 1, 48, 48) on the same device: the arithmetic
    of edge.vision.face.normalize_face, with bitwise the same result."""
    return ((faces_u8.float() / 255.0 - cfg.mean) / cfg.std).unsqueeze(1)


def augment_faces(x: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Random flip, rotation (±15°), scale (0.85–1.15), shift (±10 %), brightness/contrast,
    and random erasing of one patch (half the faces), on a normalised face batch (B, 1, H, W).

    `strength` scales every range and the erasing probability (0.5: ±7.5°, 0.925–1.075, …);
    the flip stays at one face in two."""
    b, device = x.shape[0], x.device

    def around(centre: float, spread: float) -> torch.Tensor:
        return centre + (torch.rand(b, generator=gen) * 2 - 1) * spread * strength

    angle = around(0, 15) * math.pi / 180
    scale = around(1, 0.15)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, around(0, 0.1)], 1),
            torch.stack([sin * flip, cos, around(0, 0.1)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta.to(device), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    gain, offset = around(1, 0.3).to(device), around(0, 0.4).to(device)
    x = x * gain.view(b, 1, 1, 1) + offset.view(b, 1, 1, 1)
    h, w = x.shape[2:]
    size = (torch.rand(b, generator=gen) * 0.3 * h).long().to(device)
    top = (torch.rand(b, generator=gen) * h).long().to(device)
    left = (torch.rand(b, generator=gen) * w).long().to(device)
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    erase = (
        (rows >= top.view(b, 1, 1))
        & (rows < (top + size).view(b, 1, 1))
        & (cols >= left.view(b, 1, 1))
        & (cols < (left + size).view(b, 1, 1))
    )
    erase &= (torch.rand(b, generator=gen) < 0.5 * strength).to(device).view(b, 1, 1)
    return x.masked_fill(erase.unsqueeze(1), 0.0)


def spec_augment(
    audio: torch.Tensor, gen: torch.Generator, time_mask: int = 30, feature_mask: int = 4
) -> torch.Tensor:
    """One time mask and one mask on each of the 3 coefficient groups, per sample (B, T, 39)."""
    b, t, d = audio.shape
    group, device = d // 3, audio.device
    t0 = (torch.rand(b, generator=gen) * t).long().to(device).view(b, 1)
    tw = (torch.rand(b, generator=gen) * time_mask).long().to(device).view(b, 1)
    f0 = (torch.rand(b, generator=gen) * group).long().to(device).view(b, 1)
    fw = (torch.rand(b, generator=gen) * feature_mask).long().to(device).view(b, 1)
    steps = torch.arange(t, device=device).view(1, t)
    coeffs = torch.arange(d, device=device).view(1, d) % group
    tmask = (steps >= t0) & (steps < t0 + tw)
    fmask = (coeffs >= f0) & (coeffs < f0 + fw)
    return audio.masked_fill(tmask.unsqueeze(2) | fmask.unsqueeze(1), 0.0)


def modality_mask(
    b: int, p_face_only: float, p_audio_only: float, gen: torch.Generator
) -> torch.Tensor:
    """Per-sample [face present, audio present]: face-only, audio-only or both."""
    r = torch.rand(b, generator=gen)
    face = (r >= p_face_only + p_audio_only) | (r < p_face_only)
    audio = r >= p_face_only
    return torch.stack([face, audio], 1).float()
