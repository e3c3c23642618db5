"""The voice stage of a student whose voice is Whisper base's first blocks (model config
`voice = "whisper-base"`): the blocks are frozen, so each training window's mean steps are
computed once (and cached by content) and the stage trains what follows them, the pooling's
projection and the voice head, on those.

Each training clip gives its centred window and `--audio-bank` augmented windows (the wave
augmentation of distill.speech_augment, seeded by the clip's content); draws are balanced as
the other voice stage's (distill.pairing.balanced_weights) and scored over the classes of the
clip's corpus. Validation runs the whole model, its head reading the validation windows' mean
steps computed once.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from distill.cache import Decoded
from distill.config import TrainConfig
from distill.evaluate import TorchPredictor, window_key
from distill.fit import Batch
from distill.models import EmotionModel, MeanPool, WhisperVoice
from distill.pairing import balanced_weights, centred_window, corpus_support
from distill.speech_augment import SpeechAugment, training_features
from distill.speech_encoder import clip_keys, store_states, stored_states
from edge.audio.frontend import AudioConfig, window_features
from edge.core.errors import UsageError
from edge.core.voice_norm import statistics

STATES_VERSION = "whisper-voice window means, block 3"
CHUNK = 16  # windows per encoder call


def window_keys(waves: Sequence[np.ndarray], aug: SpeechAugment, variants: int, seed: int):
    """Per clip, the state-store keys of its centred window and its augmented ones."""
    setting = f"{STATES_VERSION}|{aug}|{seed}".encode()
    return [
        [
            hashlib.sha1(setting + f"|{v}|{clip}".encode()).hexdigest()[:20]
            for v in range(variants + 1)
        ]
        for clip in clip_keys(waves, "whisper-base")
    ]


def clip_windows(
    wave: np.ndarray, cfg: AudioConfig, aug: SpeechAugment, variants: int, seed: int, key: str
) -> np.ndarray:
    """(variants + 1, frames, 80): the centred window's log-mel, then `variants` augmented
    windows' (seeded by the clip's key: the same for the clip in any subset of a corpus)."""
    rng = np.random.default_rng((seed, int(key[:12], 16), 7919))
    first = window_features(centred_window(wave, cfg), cfg)
    return np.stack([first, *(training_features(wave, cfg, rng, aug) for _ in range(variants))])


@torch.no_grad()
def window_states(
    voice: WhisperVoice,
    audio: Decoded,
    cfg: AudioConfig,
    aug: SpeechAugment,
    variants: int,
    seed: int,
    cache_dir: Path | None = None,
) -> np.ndarray:
    """(N, variants + 1, 512) float32: the mean Whisper steps of each clip's windows
    (clip_windows), from the cache where it has them; the rest computed and stored."""
    keys = window_keys(audio.data, aug, variants, seed)
    known = stored_states(cache_dir)
    missing = [i for i, k in enumerate(keys) if any(v not in known for v in k)]
    voice.eval()
    done_keys: list[str] = []
    done_states: list[np.ndarray] = []
    for n, i in enumerate(tqdm(missing, desc="whisper windows", unit="clip", leave=False)):
        windows = torch.from_numpy(
            clip_windows(audio.data[i], cfg, aug, variants, seed, keys[i][0])
        )
        means = torch.cat([voice(part).mean(1) for part in windows.split(CHUNK)]).numpy()
        known.update(zip(keys[i], means, strict=True))
        done_keys += keys[i]
        done_states.append(means)
        if len(done_states) == 100 or n == len(missing) - 1:  # stored as it goes
            store_states(done_keys, np.concatenate(done_states), cache_dir)
            done_keys, done_states = [], []
    return np.stack([np.stack([known[v] for v in k]) for k in keys])


class PooledVoice(nn.Module):
    """The voice's calibrated logits from its standardised mean steps (B, 512): what a Whisper
    voice trains through (the standardisation is done on the cached states, standardised)."""

    def __init__(self, model: EmotionModel):
        super().__init__()
        self.model = model

    def forward(self, standardised_steps: torch.Tensor) -> torch.Tensor:
        return self.model.voice_from_attended(self.model.attention.value(standardised_steps))


@torch.no_grad()
def pooled_validation(
    voice: WhisperVoice, windows: np.ndarray
) -> Callable[[EmotionModel], TorchPredictor]:
    """The validation predictor of a Whisper voice stage: each validation window's mean steps
    computed once, here, and read by the model's head each epoch (TorchPredictor) without
    running the frozen blocks again."""
    voice.eval()
    means = [
        voice(torch.from_numpy(part)).mean(1).numpy()
        for part in np.split(np.ascontiguousarray(windows), range(CHUNK, len(windows), CHUNK))
    ]
    states = dict(zip(map(window_key, windows), np.concatenate(means), strict=True))
    return lambda model: TorchPredictor(model, states=states)


def check_options(cfg: TrainConfig) -> None:
    """The voice-stage options that need the voice's own steps, refused for a Whisper voice."""
    refused = {
        "--teacher": cfg.teacher,
        "--audio-encoder-kd": cfg.audio_encoder_kd,
        "--audio-adversary": cfg.audio_adversary,
        "--audio-mixstyle": cfg.audio_mixstyle,
    }
    given = [option for option, value in refused.items() if value]
    if given:
        raise UsageError(f"{', '.join(given)}: not for a Whisper voice (its blocks are frozen)")


def standardised(states: np.ndarray, audio: Decoded, model: EmotionModel) -> np.ndarray:
    """The training windows' mean steps (N, V, 512) as the voice's projection reads them. The
    pooling's fixed standardisation is set from them when fresh (one set already, by an earlier
    stage or a resumed run, is kept: the projection learnt on it); it standardises them, or,
    for a voice that adapts to its deployment, it is only the prior, and each corpus's windows
    are standardised by that corpus's own statistics."""
    pool: MeanPool = model.attention
    flat = states.reshape(-1, states.shape[-1])
    if bool((pool.centre == 0).all() and (pool.spread == 1).all()):
        prior = torch.from_numpy(statistics(flat))
        pool.centre.copy_(prior[0])
        pool.spread.copy_(prior[1])
    if not model.adapts_voice:
        centre, spread = pool.centre.numpy(), pool.spread.numpy()
        return ((states - centre) / spread).astype(np.float32)
    out = np.empty_like(states)
    for corpus in np.unique(audio.corpora):
        rows = audio.corpora == corpus
        centre, spread = statistics(states[rows].reshape(-1, states.shape[-1]))
        out[rows] = (states[rows] - centre) / spread
    return out


def pooled_batches(
    states: np.ndarray, audio: Decoded, draws: int, batch_size: int
) -> tuple[int, Callable]:
    """Steps per epoch and the epoch's batches: `draws` balanced draws of a clip and one of
    its windows."""
    states_t = torch.from_numpy(states)
    labels = torch.from_numpy(audio.labels).long()
    support = torch.from_numpy(corpus_support(audio))
    weights = torch.from_numpy(balanced_weights(audio))

    def batches(epoch: int, gen: torch.Generator) -> Iterator[Batch]:
        clips = torch.multinomial(weights, draws, replacement=True, generator=gen)
        windows = torch.randint(states.shape[1], (draws,), generator=gen)
        for start in range(0, draws, batch_size):
            c, w = clips[start : start + batch_size], windows[start : start + batch_size]
            yield (states_t[c, w],), labels[c], support[c]

    return math.ceil(draws / batch_size), batches
