"""Class-paired fusion data: a face of class c with a speech window of class c.

No audio-visual corpus with the same person's face and voice could be obtained, so fused
training and evaluation pair FER2013 faces with RAVDESS speech of the same class; people are
disjoint across splits because each corpus is split by its own people (see the data README).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from distill.cache import Decoded
from distill.ferplus import majority_labels, training_targets
from distill.speech_augment import PRESETS, SpeechAugment, training_features
from edge.audio.frontend import AudioConfig, voiced_frames, window_features
from edge.core.labels import NUM_CLASSES

PAIRS_PER_CLIP = 10
EVAL_SEED = 20260101


def centred_start(wave: np.ndarray, cfg: AudioConfig) -> int:
    """Where the evaluation window starts: window_s of audio centred on the speech energy
    (0 when the clip is not longer than a window)."""
    n = cfg.window_samples
    if len(wave) <= n:
        return 0
    voiced = voiced_frames(wave, cfg)
    centre_frame = np.flatnonzero(voiced).mean() if voiced.any() else len(voiced) / 2
    centre = int(centre_frame * cfg.hop_length + cfg.win_length / 2)
    return int(np.clip(centre - n // 2, 0, len(wave) - n))


def centred_window(wave: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """The deterministic evaluation window: window_s of audio centred on the speech energy."""
    start = centred_start(wave, cfg)
    return wave[start : start + cfg.window_samples]


class PairedTrainSet(Dataset):
    """Each face of the training split with a random same-class training clip, freshly cropped
    and augmented every time it is drawn. Items: (the face's index, audio (T, 39), label): the
    faces themselves are gathered by index where they are kept (on the training device).

    A face with FER+ votes takes, each time it is drawn, a class drawn from its vote
    distribution (distill.ferplus.training_targets; Barsoum et al.'s "probabilistic label
    drawing"), so that over the epochs its face learns the crowd's distribution as in the face
    stage, not FER2013's single label; faces whose majority is not-a-face are left out. Votes
    for a class without training clips are dropped (a face left with none takes its label)."""

    def __init__(self, faces: Decoded, audio: Decoded, cfg: AudioConfig, seed: int = 0):
        self.audio, self.cfg = audio, cfg
        self.clips_by_class = [np.flatnonzero(audio.labels == c) for c in range(NUM_CLASSES)]
        has_clips = np.array([len(clips) > 0 for clips in self.clips_by_class])
        voted, keep = training_targets(faces.votes, faces.labels)
        voted, own = voted * has_clips, np.eye(NUM_CLASSES)[faces.labels] * has_clips
        targets = np.where(voted.sum(1, keepdims=True) > 0, voted, own)
        mass = targets.sum(1)
        unpaired = keep & (mass == 0)
        if unpaired.any():
            missing = sorted({int(c) for c in faces.labels[unpaired]})
            raise ValueError(f"no training clips for classes {missing}")
        self.rows = np.flatnonzero(keep)
        self.targets = targets[keep] / mass[keep, None]
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.seed, self.epoch, i))
        label = int(rng.choice(NUM_CLASSES, p=self.targets[i]))
        clip = self.audio.data[rng.choice(self.clips_by_class[label])]
        return int(self.rows[i]), training_features(clip, self.cfg, rng), label


def corpus_support(audio: Decoded) -> np.ndarray:
    """Per clip, the classes its corpus has (N, 7) bool: a clip's loss compares its class with
    those only (distill.pretrain.restricted_cross_entropy), so a corpus without, say, surprise
    does not teach that its clips are not surprise."""
    support = np.zeros((len(audio), NUM_CLASSES), bool)
    for corpus in np.unique(audio.corpora):
        rows = audio.corpora == corpus
        support[np.ix_(rows, np.unique(audio.labels[rows]))] = True
    return support


def balanced_weights(audio: Decoded, corpus_power: float = 0.5) -> np.ndarray:
    """Sampling weight per clip: classes equal within each corpus, and each corpus drawn in
    proportion to (its number of clips)^corpus_power (0.5: small corpora count more than their
    size, less than the big one). Sums to 1."""
    weights = np.zeros(len(audio))
    for corpus in np.unique(audio.corpora):
        rows = audio.corpora == corpus
        classes, counts = np.unique(audio.labels[rows], return_counts=True)
        share = rows.sum() ** corpus_power / len(classes)
        for c, n in zip(classes, counts, strict=True):
            weights[rows & (audio.labels == c)] = share / n
    return weights / weights.sum()


class AudioTrainSet(Dataset):
    """`repeats` × N clips an epoch, drawn with balanced_weights, each an augmented training
    window. With `bank` > 0, `bank` augmented windows per clip are computed once (seeded) and
    each draw takes one of them: augmentation costs ~5× the training step of the student's
    voice branch on a CPU, so a bank makes an epoch several times faster for the price of a
    fixed set of variants. The bank is built by `prepare` in the training process (the
    loader's worker processes of every epoch inherit it), over `workers` processes (each clip
    seeded alone: the same bank for any number). Items: (audio (T, 39), label, the clip
    corpus's classes (7,) bool, the clip's index)."""

    def __init__(
        self,
        audio: Decoded,
        cfg: AudioConfig,
        repeats: int,
        seed: int = 0,
        aug: SpeechAugment = PRESETS["full"],
        bank: int = 0,
        workers: int = 0,
    ):
        self.audio, self.cfg, self.repeats, self.seed, self.aug = audio, cfg, repeats, seed, aug
        self.support = corpus_support(audio)
        self.weights = balanced_weights(audio)
        self.epoch = 0
        self.bank_size, self.workers = bank, workers
        self._bank: np.ndarray | None = None

    @property
    def bank(self) -> np.ndarray | None:
        """The augmented windows, built on first use (a resumed run with no epoch left to
        train never pays for them); None without a bank."""
        self.prepare()
        return self._bank

    def prepare(self) -> None:
        """Build the bank now (when there is one and it is not built yet)."""
        if self._bank is None and self.bank_size > 0:
            self._bank = self._build_bank()

    def clip_variants(self, clip: int) -> np.ndarray:
        """(bank, T, 39) float16: the bank's augmented windows of one clip."""
        rng = np.random.default_rng((self.seed, clip, 7919))
        wave = self.audio.data[clip]
        return np.stack(
            [training_features(wave, self.cfg, rng, self.aug) for _ in range(self.bank_size)]
        ).astype(np.float16)

    def _build_bank(self) -> np.ndarray:
        """(N, bank, T, 39) float16 augmented windows of every clip."""
        shape = (len(self.audio), self.bank_size, self.cfg.num_frames, self.cfg.feature_dim)
        bank = np.empty(shape, np.float16)
        clips = _BankClips(self)
        variants = (  # its own generator: the global one (dropout's) is left as it was
            DataLoader(clips, None, num_workers=self.workers, generator=torch.Generator())
            if self.workers > 1
            else clips
        )
        for clip, windows in enumerate(
            tqdm(variants, total=len(clips), desc="augmenting speech", unit="clip", leave=False)
        ):
            bank[clip] = np.asarray(windows)
        return bank

    def __len__(self) -> int:
        return len(self.audio) * self.repeats

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.seed, self.epoch, i))
        clip = int(rng.choice(len(self.audio), p=self.weights))
        bank = self.bank
        if bank is None:
            features = training_features(self.audio.data[clip], self.cfg, rng, self.aug)
        else:
            features = bank[clip, rng.integers(bank.shape[1])].astype(np.float32)
        return features, int(self.audio.labels[clip]), self.support[clip], clip


class _BankClips(Dataset):
    """The clips of an AudioTrainSet as items of their bank variants (for parallel building)."""

    def __init__(self, source: AudioTrainSet):
        self.source = source

    def __len__(self) -> int:
        return len(self.source.audio)

    def __getitem__(self, clip: int) -> np.ndarray:
        return self.source.clip_variants(clip)


@dataclass(frozen=True, eq=False)
class Rows:
    """The rows `index` of `base`, gathered only when sliced: the inputs of many pairs that
    share a few clips and faces, without a copy per pair (ten pairs a clip of RAVDESS's 1,440
    clips would be 0.7 GB of audio features for each pairing and corpus group)."""

    base: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: slice | np.ndarray | tuple) -> np.ndarray:
        rows, within = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        return self.base[(self.index[rows], *within)]

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        return np.asarray(self.base[self.index], dtype=dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.base.shape[1:])


@dataclass
class EvalSet:
    """Fixed model inputs: face (N,48,48) as uint8, audio (N,T,39), mask (N,2), labels (N,);
    faces and audio are arrays or `Rows` of one (read by slices)."""

    name: str
    faces: np.ndarray | Rows
    audio: np.ndarray | Rows
    mask: np.ndarray
    labels: np.ndarray
    excluded: dict[str, int] = field(default_factory=dict)  # samples left out, by reason
    corpora: np.ndarray | None = None  # (N,) each row's speech corpus, where it has a voice

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


def ferplus_set(faces: Decoded, cfg: AudioConfig) -> EvalSet | None:
    """The faces with a FER+ majority label, scored against it (distill.ferplus), with the
    excluded faces counted; None when no face carries FER+ votes."""
    if not faces.votes.any():
        return None
    labels, excluded = majority_labels(faces.votes)
    keep = labels >= 0
    face_set = face_only_set(faces.take(np.flatnonzero(keep)), cfg)
    face_set.name, face_set.labels, face_set.excluded = "face_only_ferplus", labels[keep], excluded
    return face_set


def face_sets(faces: Decoded, cfg: AudioConfig) -> list[EvalSet]:
    """Face-only against the original labels and, where there are votes, the FER+ majority."""
    extra = ferplus_set(faces, cfg)
    return [face_only_set(faces, cfg), *([] if extra is None else [extra])]


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
        corpora=audio.corpora,
    )


def audio_sets(audio: Decoded, cfg: AudioConfig, feats: np.ndarray | None = None) -> list[EvalSet]:
    """Audio-only over every clip and, with more than one corpus, over each corpus's clips
    ('audio_only[emodb]', …)."""
    feats = clip_features(audio, cfg) if feats is None else feats
    sets = []
    for suffix, rows in corpus_groups(audio.corpora):
        idx = np.flatnonzero(rows)
        one = audio_only_set(audio.take(idx), cfg, feats[idx])
        one.name += suffix
        sets.append(one)
    return sets


def corpus_groups(corpora: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """('', every row) and, with more than one corpus, ('[name]', that corpus's rows): the
    groups every audio and fused evaluation row is reported for."""
    names = np.unique(corpora)
    every = [("", np.ones(len(corpora), bool))]
    return every + [(f"[{c}]", corpora == c) for c in (names if len(names) > 1 else ())]


def build_eval_sets(
    faces: Decoded,
    audio: Decoded,
    cfg: AudioConfig,
    pairs_per_clip: int = PAIRS_PER_CLIP,
    seed: int = EVAL_SEED,
    ferplus_pairs: bool = False,
) -> list[EvalSet]:
    """Face-only (all faces; and against the FER+ majority), audio-only (all clips), fused
    pairs (each clip with `pairs_per_clip` faces of its class by FER2013's labels, seeded) and
    the pairs with one modality masked; with several speech corpora also each corpus's
    audio-only and pairs ('fused[emodb]', 'fused_audio_missing[emodb]', …). With
    `ferplus_pairs` and faces with votes, the pairs again with faces whose FER+ majority is the
    clip's class ('fused_ferplus', 'fused_ferplus_audio_missing', …): the pairs scored on the
    labels the faces are trained for (faces without a majority are never drawn)."""
    feats = clip_features(audio, cfg)
    sets = [
        *face_sets(faces, cfg),
        *audio_sets(audio, cfg, feats),
        *paired_sets("fused", faces.data, faces.labels, audio, feats, pairs_per_clip, seed),
    ]
    if ferplus_pairs and faces.votes.any():
        majority, _ = majority_labels(faces.votes)
        sets += paired_sets(
            "fused_ferplus", faces.data, majority, audio, feats, pairs_per_clip, seed
        )
    return sets


def paired_sets(
    name: str,
    face_data: np.ndarray,
    face_labels: np.ndarray,
    audio: Decoded,
    feats: np.ndarray,
    pairs_per_clip: int,
    seed: int,
) -> list[EvalSet]:
    """Each clip with `pairs_per_clip` faces whose label (−1: none) is its class, drawn with
    `seed`; as `name`, `name`_audio_missing and `name`_face_missing, over every clip and per
    corpus. A clip whose class has no face is left out and counted."""
    rng = np.random.default_rng(seed)
    face_idx, clip_idx = [], []
    paired = np.zeros(len(audio), bool)
    for c, label in enumerate(audio.labels):
        pool = np.flatnonzero(face_labels == label)
        if len(pool) == 0:
            continue
        face_idx += list(rng.choice(pool, pairs_per_clip, replace=len(pool) < pairs_per_clip))
        clip_idx += [c] * pairs_per_clip
        paired[c] = True
    fi, ci = np.array(face_idx, np.int64), np.array(clip_idx, np.int64)
    sets = []
    for suffix, clips in corpus_groups(audio.corpora):
        rows = clips[ci]
        if not rows.any():
            continue
        f, c = fi[rows], ci[rows]
        unpaired = int((clips & ~paired).sum())
        excluded = {"clips_without_faces_of_their_class": unpaired} if unpaired else {}
        # the pairs' inputs as rows of the faces and of the clips' features, shared by the
        # three masks and the corpus groups (evaluation never writes them)
        faces, voices, labels = Rows(face_data, f), Rows(feats, c), audio.labels[c]
        for masked, mask in (
            ("", [1.0, 1.0]),
            ("_audio_missing", [1.0, 0.0]),
            ("_face_missing", [0.0, 1.0]),
        ):
            m = np.tile(mask, (len(f), 1)).astype(np.float32)
            sets.append(
                EvalSet(
                    name + masked + suffix, faces, voices, m, labels, excluded, audio.corpora[c]
                )
            )
    return sets


def collate(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PairedTrainSet items → (face indices, audio features, labels)."""
    faces, audio, labels = zip(*batch, strict=True)
    return (
        torch.tensor(faces, dtype=torch.long),
        torch.from_numpy(np.stack(audio)),
        torch.tensor(labels, dtype=torch.long),
    )
