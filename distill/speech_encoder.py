"""Targets for the voice's feature distillation (`--audio-encoder-kd`): what a speech encoder
pretrained on many speakers makes of each training clip (`--audio-encoder` picks which).

- `resemblyzer`: Resemblyzer's speaker encoder (Apache-2.0, weights inside its wheel; a 3-layer
  LSTM of 256 units over 40 mel bands). A clip's target is the final hidden state of its three
  layers (768 values) over 1.6 s partial windows every 0.8 s, averaged over the windows and
  L2-normalised.
- `whisper-base`: the mean state after the third of Whisper base's six encoder blocks (512
  values; distill.whisper_encoder), trained on 680,000 hours of speech in many languages.

A linear probe on either transfers across corpora better than the voice trained on emotion
alone, Whisper's by 7 points more (docs/voice-cross-corpus.md). Training only; nothing of it
is exported.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from distill.cache import default_cache_dir
from edge.core.errors import UsageError

SAMPLE_RATE = 16000
MEL_BANDS = 40
TARGET_DBFS = -30.0
PARTIAL_FRAMES = 160  # 1.6 s windows …
PARTIALS_PER_S = 1.25  # … every 0.8 s
STORE_PREFIX = "speech-encoder-states-"


def _encoder() -> torch.nn.LSTM:
    """The pretrained encoder's LSTM, read from the resemblyzer wheel's weights (the package
    itself is not imported: its voice-activity dependency fails to import on current
    setuptools, and only the weights and the front end below are needed). Built under a forked
    random state: the LSTM's throwaway initialisation would otherwise advance the global
    generator, and a seeded run would train differently when the states had to be computed
    than when they were read from the cache."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "--audio-encoder-kd needs the resemblyzer package: pip install resemblyzer"
        )
    weights = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    state = torch.load(weights, map_location="cpu", weights_only=True)["model_state"]
    with torch.random.fork_rng(devices=[]):
        lstm = torch.nn.LSTM(MEL_BANDS, 256, 3, batch_first=True)
    lstm.load_state_dict({k[len("lstm.") :]: v for k, v in state.items() if k.startswith("lstm.")})
    return lstm.eval()


def _mel(wave: np.ndarray) -> np.ndarray:
    """(frames, 40) power mel spectrogram, 25 ms windows every 10 ms (the encoder's input)."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=wave, sr=SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=MEL_BANDS
    )
    return mel.astype(np.float32).T


def _normalise_volume(wave: np.ndarray) -> np.ndarray:
    """Raised (never lowered) to −30 dBFS RMS, as the encoder was trained."""
    rms = float(np.sqrt(np.mean(wave**2)))
    gain = 10 ** (TARGET_DBFS / 20) / max(rms, 1e-8)
    return wave * max(gain, 1.0)


def _resemblyzer_states(waves: Sequence[np.ndarray]) -> np.ndarray:
    lstm = _encoder()
    states = np.zeros((len(waves), 768), np.float32)
    step, frames = int(SAMPLE_RATE / PARTIALS_PER_S / 160), PARTIAL_FRAMES
    for i, wave in enumerate(tqdm(waves, desc="speech encoder", unit="clip", leave=False)):
        mel = _mel(_normalise_volume(np.asarray(wave, np.float32)))
        if len(mel) < frames:
            mel = np.pad(mel, ((0, frames - len(mel)), (0, 0)))
        starts = range(0, len(mel) - frames + 1, step)
        partials = torch.from_numpy(np.stack([mel[s : s + frames] for s in starts]))
        with torch.no_grad():
            _, (hidden, _) = lstm(partials)  # (layers, windows, 256)
        state = hidden.permute(1, 0, 2).reshape(len(partials), -1).mean(0).numpy()
        states[i] = state / max(float(np.linalg.norm(state)), 1e-8)
    return states


def _whisper_states(waves: Sequence[np.ndarray]) -> np.ndarray:
    from distill.whisper_encoder import whisper_states

    return whisper_states(waves)


@dataclass(frozen=True)
class SpeechEncoder:
    """A pretrained speech encoder: its name, the version string of its states (part of the
    cache key), their width and the function computing them from 16 kHz waves."""

    name: str
    version: str
    dim: int
    compute: Callable[[Sequence[np.ndarray]], np.ndarray]


ENCODERS = {
    e.name: e
    for e in (
        SpeechEncoder(
            "resemblyzer",
            "resemblyzer-0.1.4 lstm states, 1.6 s every 0.8 s",
            768,
            _resemblyzer_states,
        ),
        SpeechEncoder(
            "whisper-base", "whisper-base ct2 fp16, mean after block 3", 512, _whisper_states
        ),
    )
}
DEFAULT_ENCODER = "resemblyzer"


def speech_encoder(name: str) -> SpeechEncoder:
    """The encoder called `name`; a UsageError naming the choices otherwise."""
    if name not in ENCODERS:
        raise UsageError(f"--audio-encoder {name!r}: {', '.join(ENCODERS)} expected")
    return ENCODERS[name]


def clip_keys(waves: Sequence[np.ndarray], encoder: str = DEFAULT_ENCODER) -> list[str]:
    """Each wave's key in the state store: a digest of the encoder's version and its samples."""
    version = speech_encoder(encoder).version.encode()
    return [
        hashlib.sha1(version + np.ascontiguousarray(w, np.float32).tobytes()).hexdigest()[:20]
        for w in waves
    ]


def stored_states(cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Every state in the cache's stores (speech-encoder-*.npz: keys and states), by clip key."""
    found: dict[str, np.ndarray] = {}
    for store in sorted((cache_dir or default_cache_dir()).glob(f"{STORE_PREFIX}*.npz")):
        with np.load(store) as z:
            found.update(zip(z["keys"].tolist(), z["states"], strict=True))
    return found


def store_states(keys: Sequence[str], states: np.ndarray, cache_dir: Path | None = None) -> None:
    """Add states to the cache (one more store file, written atomically), e.g. a data pack's,
    so that training where the encoder is absent finds them."""
    folder = cache_dir or default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1("|".join(keys).encode()).hexdigest()[:16]
    store = folder / f"{STORE_PREFIX}{name}.npz"
    with open(store.with_suffix(".tmp"), "wb") as f:
        np.savez(f, keys=np.array(keys), states=np.asarray(states, np.float32))
    store.with_suffix(".tmp").replace(store)


def encoder_states(
    waves: Sequence[np.ndarray],
    sample_rate: int,
    cache_dir: Path | None = None,
    encoder: str = DEFAULT_ENCODER,
) -> np.ndarray:
    """(N, dim) float32: each wave's state in `encoder`, from the cache's stores where a clip
    has one; the others are encoded (which needs the encoder's weights) and stored."""
    if sample_rate != SAMPLE_RATE:
        raise UsageError(f"the speech encoder reads {SAMPLE_RATE} Hz audio, not {sample_rate} Hz")
    chosen = speech_encoder(encoder)
    keys = clip_keys(waves, encoder)
    known = stored_states(cache_dir)
    missing = sorted({k: i for i, k in enumerate(keys) if k not in known}.values())
    if missing:
        computed = chosen.compute([waves[i] for i in missing])
        store_states([keys[i] for i in missing], computed, cache_dir)
        known.update(zip((keys[i] for i in missing), computed, strict=True))
    return np.stack([known[k] for k in keys]) if keys else np.zeros((0, chosen.dim), np.float32)


def centre_by_speaker(states: np.ndarray, corpora: np.ndarray, persons: np.ndarray) -> np.ndarray:
    """Each state less the mean state of its speaker (a person of a corpus) over `states`: what
    sets a clip apart from the same speaker's other clips (emotion, words), not the voice."""
    speakers = np.char.add(np.char.add(corpora.astype(str), "/"), persons.astype(str))
    return _normalise_by_group(states, speakers, scale=False)


def standardise_by_corpus(states: np.ndarray, corpora: np.ndarray) -> np.ndarray:
    """Each state z-normalised by its corpus's mean and deviation over `states`: the offsets a
    corpus's recordings and language give every clip removed. A linear probe on the states so
    normalised transfers across corpora 5.5 points better (docs/voice-cross-corpus.md)."""
    return _normalise_by_group(states, corpora, scale=True)


def standardise(states: np.ndarray) -> np.ndarray:
    """Each state z-normalised by the mean and deviation over `states`: no dimension outweighs
    the others in the cosine (a transformer's states carry a few large, nearly constant ones)."""
    return _normalise_by_group(states, np.zeros(len(states), int), scale=True)


def _normalise_by_group(states: np.ndarray, groups: np.ndarray, scale: bool) -> np.ndarray:
    """float32 states less their group's mean state and, with `scale`, over its deviation."""
    normalised = np.array(states, np.float32)
    for group in np.unique(groups):
        mine = groups == group
        rows = normalised[mine] - normalised[mine].mean(0)
        normalised[mine] = rows / (normalised[mine].std(0) + 1e-6) if scale else rows
    return normalised
