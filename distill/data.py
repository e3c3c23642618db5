"""Loading and batching: the decoded faces and speech of a split (from the corpus folders or a
data pack), and one epoch's batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from distill.cache import (
    Decoded,
    decode_audio,
    decode_faces,
    default_cache_dir,
    load_decoded,
    save_decoded,
)
from distill.config import TrainConfig
from distill.corpora import load_corpus, load_speech
from distill.distributed import Cluster
from distill.pack import is_pack, pack_digest, read_encoder_states, read_pack
from distill.speech_encoder import clip_keys, store_states
from edge.audio.frontend import AudioConfig
from edge.core.errors import DataError, UsageError


def from_pack(pack: Path, modality: str, sample_rate: int, cache_dir: Path | None) -> Decoded:
    """The faces or speech of a data pack (distill.pack), decoded once into the cache; the
    speech encoders' states it carries go to the cache's state store."""
    cache = (cache_dir or default_cache_dir()) / f"pack-{pack_digest(pack)}-{modality}.npz"
    decoded = load_decoded(cache)
    if decoded is None:
        decoded = read_pack(pack, modality, sample_rate)
        if modality == "audio":
            for encoder, states in read_encoder_states(pack).items():
                store_states(clip_keys(decoded.data, encoder), states, cache_dir)
        save_decoded(cache, decoded)
    return decoded


def face_corpus(faces: Path, cache_dir: Path | None = None) -> Decoded:
    """Every decoded face of a corpus folder, CSV or data pack."""
    if is_pack(faces):
        return from_pack(Path(faces), "face", 0, cache_dir)
    return decode_faces(load_corpus(faces, "face"), cache_dir)


def speech_corpus(
    speech: Path | Sequence[Path], audio_cfg: AudioConfig, cache_dir: Path | None = None
) -> Decoded:
    """Every decoded clip of one speech corpus or several, or of one data pack."""
    paths = [Path(speech)] if isinstance(speech, (str, Path)) else [Path(p) for p in speech]
    packs = [p for p in paths if is_pack(p)]
    if packs and len(paths) > 1:
        raise UsageError(f"--speech: a data pack ({packs[0]}) stands alone, not among corpora")
    if packs:
        return from_pack(packs[0], "audio", audio_cfg.sample_rate, cache_dir)
    return decode_audio(load_speech(paths), audio_cfg, cache_dir)


def load_faces(
    faces: Path, split: str, cache_dir: Path | None = None, max_faces: int = 0
) -> Decoded:
    """Decoded faces of one split (optionally a seeded subset)."""
    f = face_corpus(faces, cache_dir).select(split)
    if len(f) == 0:
        raise DataError(f"no faces in the '{split}' split")
    if max_faces and len(f) > max_faces:
        idx = np.sort(np.random.default_rng(0).choice(len(f), max_faces, replace=False))
        f = f.take(idx)
    return f


def load_speech_split(
    speech: Path | Sequence[Path], split: str, audio_cfg: AudioConfig, cache_dir: Path | None
) -> Decoded:
    """Decoded clips of one split of one speech corpus or several (or of a data pack)."""
    a = speech_corpus(speech, audio_cfg, cache_dir).select(split)
    if len(a) == 0:
        raise DataError(f"no speech clips in the '{split}' split")
    return a


def load_data(
    faces: Path,
    speech: Path | Sequence[Path],
    split: str,
    audio_cfg: AudioConfig,
    cache_dir: Path | None = None,
    max_faces: int = 0,
) -> tuple[Decoded, Decoded]:
    """Decoded faces and speech (one corpus or several) of one split (optionally a seeded
    subset of the faces)."""
    f = load_faces(faces, split, cache_dir, max_faces)
    a = load_speech_split(speech, split, audio_cfg, cache_dir)
    return f, a


def epoch_loader(
    dataset: Dataset,
    cfg: TrainConfig,
    cluster: Cluster,
    gen: torch.Generator,
    epoch: int,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """One epoch's shuffled batches: of the whole dataset, or of this process's shard of it
    under torchrun (DistributedSampler, reshuffled per epoch); incomplete batches dropped."""
    sampler = None
    if cluster.world > 1:
        sampler = DistributedSampler(
            dataset, cluster.world, cluster.rank, shuffle=True, seed=cfg.seed
        )
        sampler.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=gen,
        collate_fn=collate_fn,
        num_workers=cfg.workers,
        pin_memory=cluster.device.type == "cuda",
        drop_last=len(dataset) // cluster.world > cfg.batch_size,
    )
