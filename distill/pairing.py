"""Class-paired fusion data: a face of class c with a speech window of class c.

No audio-visual corpus with the same person's face and voice could be obtained, so fused
training and evaluation pair FER2013 faces with RAVDESS speech of the same class; people are
disjoint across splits because each corpus is split by its own people (see the data README).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from distill.cache import Decoded
from edge.audio import AudioConfig, voiced_frames, window_features
from edge.labels import NUM_CLASSES

PAIRS_PER_CLIP = 10
EVAL_SEED = 20260101


def centred_window(wave: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """The deterministic evaluation window: window_s of audio centred on the speech energy."""
    n = cfg.window_samples
    if len(wave) <= n:
        return wave
    voiced = voiced_frames(wave, cfg)
    centre_frame = np.flatnonzero(voiced).mean() if voiced.any() else len(voiced) / 2
    centre = int(centre_frame * cfg.hop_length + cfg.win_length / 2)
    start = int(np.clip(centre - n // 2, 0, len(wave) - n))
    return wave[start : start + n]


def random_window(wave: np.ndarray, cfg: AudioConfig, rng: np.random.Generator) -> np.ndarray:
    """A random window_s crop (training), zero-padded on a random side when the clip is short."""
    n = cfg.window_samples
    if len(wave) >= n:
        start = rng.integers(0, len(wave) - n + 1)
        return wave[start : start + n]
    front = rng.integers(0, n - len(wave) + 1)
    return np.pad(wave, (front, n - len(wave) - front))


def speed_perturb(wave: np.ndarray, rng: np.random.Generator, spread: float = 0.1) -> np.ndarray:
    """Play the clip 1 ± spread times as fast (tempo and pitch together), by linear
    interpolation: the classic speed perturbation of speech augmentation."""
    factor = rng.uniform(1 - spread, 1 + spread)
    positions = np.arange(0, len(wave) - 1, factor)
    return np.interp(positions, np.arange(len(wave)), wave).astype(np.float32)


def augment_wave(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gain and, half the time, white noise at 10–40 dB SNR."""
    wave = wave * 10 ** (rng.uniform(-6, 6) / 20)
    if rng.random() < 0.5:
        power = np.mean(wave**2) + 1e-10
        snr = rng.uniform(10, 40)
        wave = wave + rng.normal(0, np.sqrt(power / 10 ** (snr / 10)), len(wave))
    return np.clip(wave, -1, 1).astype(np.float32)


def training_features(clip: np.ndarray, cfg: AudioConfig, rng: np.random.Generator) -> np.ndarray:
    """One augmented training window of a clip: speed perturbation, a random crop, gain and
    noise, then the model's features (T, 39)."""
    wave = random_window(speed_perturb(clip, rng), cfg, rng)
    return window_features(augment_wave(wave, rng), cfg)


class PairedTrainSet(Dataset):
    """Each face of the training split with a random same-class training clip, freshly cropped
    and augmented every time it is drawn. Items: (face uint8 48×48, audio (T, 39), label)."""

    def __init__(self, faces: Decoded, audio: Decoded, cfg: AudioConfig, seed: int = 0):
        self.faces, self.audio, self.cfg = faces, audio, cfg
        self.clips_by_class = [np.flatnonzero(audio.labels == c) for c in range(NUM_CLASSES)]
        missing = [
            c
            for c, clips in enumerate(self.clips_by_class)
            if len(clips) == 0 and (faces.labels == c).any()
        ]
        if missing:
            raise ValueError(f"no training clips for classes {missing}")
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.seed, self.epoch, i))
        label = int(self.faces.labels[i])
        clip = self.audio.data[rng.choice(self.clips_by_class[label])]
        return self.faces.data[i], training_features(clip, self.cfg, rng), label


class AudioTrainSet(Dataset):
    """The training clips, each drawn `repeats` times an epoch with fresh augmentation.
    Items: (audio (T, 39), label)."""

    def __init__(self, audio: Decoded, cfg: AudioConfig, repeats: int, seed: int = 0):
        self.audio, self.cfg, self.repeats, self.seed = audio, cfg, repeats, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.audio) * self.repeats

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.seed, self.epoch, i))
        clip = i % len(self.audio)
        return training_features(self.audio.data[clip], self.cfg, rng), int(self.audio.labels[clip])


@dataclass
class EvalSet:
    """Fixed model inputs: face (N,1,48,48) as uint8, audio (N,T,39), mask (N,2), labels (N,)."""

    name: str
    faces: np.ndarray
    audio: np.ndarray
    mask: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def clip_features(audio: Decoded, cfg: AudioConfig) -> np.ndarray:
    """Deterministic window features of every clip: (N, T, 39)."""
    return np.stack([window_features(centred_window(w, cfg), cfg) for w in audio.data])


def face_only_set(faces: Decoded, cfg: AudioConfig) -> EvalSet:
    """Every face with the audio masked (a zero window that is never read)."""
    blank_audio = np.zeros((1, cfg.num_frames, cfg.feature_dim), np.float32)
    return EvalSet(
        "face_only",
        faces.data,
        np.broadcast_to(blank_audio, (len(faces), cfg.num_frames, cfg.feature_dim)),
        np.tile([1.0, 0.0], (len(faces), 1)).astype(np.float32),
        faces.labels,
    )


def audio_only_set(audio: Decoded, cfg: AudioConfig, feats: np.ndarray | None = None) -> EvalSet:
    """Every clip's centred window with the face masked (a blank face that is never read)."""
    feats = clip_features(audio, cfg) if feats is None else feats
    blank_face = np.zeros((1, 48, 48), np.uint8)
    return EvalSet(
        "audio_only",
        np.broadcast_to(blank_face, (len(audio), 48, 48)),
        feats,
        np.tile([0.0, 1.0], (len(audio), 1)).astype(np.float32),
        audio.labels,
    )


def build_eval_sets(
    faces: Decoded,
    audio: Decoded,
    cfg: AudioConfig,
    pairs_per_clip: int = PAIRS_PER_CLIP,
    seed: int = EVAL_SEED,
) -> list[EvalSet]:
    """Face-only (all faces), audio-only (all clips), fused pairs (each clip with
    `pairs_per_clip` same-class faces, seeded) and the pairs with one modality masked."""
    feats = clip_features(audio, cfg)
    sets = [face_only_set(faces, cfg), audio_only_set(audio, cfg, feats)]
    rng = np.random.default_rng(seed)
    face_idx, clip_idx = [], []
    for c, label in enumerate(audio.labels):
        pool = np.flatnonzero(faces.labels == label)
        if len(pool) == 0:
            continue
        face_idx += list(rng.choice(pool, pairs_per_clip, replace=len(pool) < pairs_per_clip))
        clip_idx += [c] * pairs_per_clip
    if face_idx:
        fi, ci = np.array(face_idx), np.array(clip_idx)
        labels = audio.labels[ci]
        for name, mask in (
            ("fused", [1.0, 1.0]),
            ("fused_audio_missing", [1.0, 0.0]),
            ("fused_face_missing", [0.0, 1.0]),
        ):
            m = np.tile(mask, (len(fi), 1)).astype(np.float32)
            sets.append(EvalSet(name, faces.data[fi], feats[ci], m, labels))
    return sets


def collate(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    faces, audio, labels = zip(*batch, strict=True)
    return (
        torch.from_numpy(np.stack(faces)),
        torch.from_numpy(np.stack(audio)),
        torch.tensor(labels, dtype=torch.long),
    )
