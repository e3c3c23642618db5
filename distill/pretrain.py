"""Single-modality pre-training (`emoedge distill --stage face|audio`) before the fused stage.

- face: the face branch and the fusion head on the FER2013 training faces alone.
- audio: the audio branch, the attention (a late-fusion student's pooling, or the concat
  head's missing-face query) and the head on the RAVDESS training clips alone; every clip is
  drawn `--audio-repeats` times an epoch with fresh augmentation (speed, crop, gain, noise,
  SpecAugment).

With `--teacher`, the loss adds Hinton distillation from the teacher's own output for that
modality (`--kd-alpha`, `--kd-temperature`) on the same augmented inputs. With
`--audio-encoder-kd W`, the audio stage adds W × (1 − cosine similarity) between the voice's
attended audio, through a linear projection trained alongside (never exported), and the clip's
state in a speech encoder pretrained on many speakers (distill.speech_encoder); with
`--audio-encoder-centre speaker`, that state less its speaker's mean over the training clips.
With `--audio-adversary W`, it adds W × the cross-entropy of a corpus classifier on the same
attended audio through gradient reversal (domain-adversarial training; VoiceObjectives).

With the other modality masked the model never reads it, so `EmotionModel.face_logits` and
`audio_logits` are exactly the model's single-modality outputs without running the other
branch. Selection is on that modality's accuracy on the validation split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from distill.augment import augment_faces, faces_to_input, spec_augment
from distill.cache import decode_audio
from distill.config import TrainConfig
from distill.corpora import Sample
from distill.data import epoch_loader, load_faces, speech_corpus
from distill.distributed import Cluster
from distill.ferplus import training_targets
from distill.fit import Batch, Stage
from distill.models import (
    EmotionModel,
    LateFusionHead,
    WhisperVoice,
    audio_config,
    distillation_loss,
)
from distill.pairing import AudioTrainSet, EvalSet, audio_sets, face_sets
from distill.run import load_teacher
from distill.speech_augment import PRESETS
from distill.speech_encoder import (
    centre_by_speaker,
    encoder_states,
    standardise,
    standardise_by_corpus,
)
from distill.whisper_voice import (
    PooledVoice,
    check_options,
    pooled_batches,
    pooled_validation,
    standardised,
    window_states,
)
from edge.core.errors import DataError
from edge.core.labels import NUM_CLASSES
from edge.vision.face import FaceConfig

log = logging.getLogger(__name__)


def class_weights(labels: np.ndarray, power: float) -> torch.Tensor:
    """Cross-entropy weights ∝ class frequency^−power (0: plain CE, 1: fully balanced),
    scaled so the average weight over the training samples is 1."""
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(float)
    weights = np.where(counts > 0, np.maximum(counts, 1.0) ** -power, 0.0)
    weights *= counts.sum() / (weights * counts).sum()
    return torch.tensor(weights, dtype=torch.float32)


def restricted_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, support: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy over each sample's supported classes only (the classes its corpus has),
    label smoothing spread over those: a corpus that lacks a class neither teaches nor
    penalises that class."""
    support = support.bool()
    logp = F.log_softmax(logits.masked_fill(~support, float("-inf")), 1).masked_fill(~support, 0)
    one_hot = F.one_hot(labels, logits.shape[1]).float()
    target = (1 - smoothing) * one_hot + smoothing * support / support.sum(1, keepdim=True)
    return -(target * logp).sum(1).mean()


class GradientReversal(torch.autograd.Function):
    """The identity forward; the gradient's sign flipped backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return -grad


class VoiceObjectives(nn.Module):
    """The voice's own logits and, as the auxiliary loss, its training-only objectives on its
    attended audio (`aux` holds their layers; none is exported):

    - `encoder_weight` × the mean of 1 − cosine similarity between the attended audio through
      a linear projection and a pretrained speech encoder's states of width `encoder_dim` (the
      next input);
    - `adversary_weight` × the cross-entropy of a small classifier telling the `corpora`
      training corpora apart from the attended audio, through gradient reversal: the
      classifier learns to tell them apart, the voice to leave it nothing to tell by
      (domain-adversarial training; the corpus indices are the last input)."""

    def __init__(
        self,
        model: EmotionModel,
        encoder_weight: float = 0.0,
        adversary_weight: float = 0.0,
        corpora: int = 0,
        encoder_dim: int = 768,
    ):
        super().__init__()
        self.model = model
        self.encoder_weight, self.adversary_weight = encoder_weight, adversary_weight
        width = model.attention.value.out_features
        self.aux = nn.ModuleDict()
        if encoder_weight:
            self.aux["projection"] = nn.Linear(width, encoder_dim)
        if adversary_weight:
            self.aux["adversary"] = nn.Sequential(
                nn.Linear(width, width), nn.ReLU(), nn.Linear(width, corpora)
            )

    def forward(self, x: torch.Tensor, *targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, attended = self.model.voice(x)
        extra = iter(targets)
        loss = torch.zeros((), device=logits.device)
        if "projection" in self.aux:
            similarity = F.cosine_similarity(self.aux["projection"](attended), next(extra), dim=1)
            loss = loss + self.encoder_weight * (1 - similarity).mean()
        if "adversary" in self.aux:
            guess = self.aux["adversary"](GradientReversal.apply(attended))
            loss = loss + self.adversary_weight * F.cross_entropy(guess, next(extra))
        return logits, loss


class OneModality(nn.Module):
    """A model seen through one modality's own logits, so that DDP wraps that forward pass."""

    def __init__(self, model: EmotionModel, modality: str):
        super().__init__()
        self.model, self.modality = model, modality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return modality_logits(self.model, self.modality)(x)


def modality_logits(model: EmotionModel, modality: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's face_logits or audio_logits."""
    return model.face_logits if modality == "face" else model.audio_logits


def face_stage(cfg: TrainConfig, model: EmotionModel, cluster: Cluster) -> Stage:
    """Faces with their FER+ vote distributions where they have them (distill.ferplus), else
    their labels; selection on the FER+ majority accuracy when the validation faces have votes."""
    faces = load_faces(Path(cfg.faces), "train", cfg.cache_path, cfg.max_train_faces)
    soft, keep = training_targets(faces.votes, faces.labels)
    if faces.votes.any():
        log.info(
            "FER+ targets for %d of %d training faces; %d not-a-face majorities left out",
            int((faces.votes.sum(1) > 0).sum()),
            len(faces),
            int((~keep).sum()),
        )
    faces, soft = faces.take(np.flatnonzero(keep)), soft[keep]
    val_sets = face_sets(
        load_faces(Path(cfg.faces), "val", cfg.cache_path, cfg.max_eval_faces),
        audio_config(model),
    )
    # the faces (uint8) and their targets stay on the training device, augmented there
    data = torch.from_numpy(faces.data).to(cluster.device)
    labels = torch.from_numpy(soft).to(cluster.device)
    steps = max(1, len(labels) // cluster.world // cfg.batch_size)
    face_cfg = FaceConfig()

    def batches(epoch: int, gen: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(len(labels), generator=gen)[cluster.shard(len(labels))]
        for i in range(steps):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size].to(cluster.device)
            x = augment_faces(faces_to_input(data[idx], face_cfg), gen, cfg.face_augment)
            yield (x,), labels[idx], None

    score_key = val_sets[-1].name  # face_only_ferplus where there are votes
    return single_modality_stage(
        "face",
        cfg,
        model,
        cluster,
        faces.labels,
        val_sets,
        lambda metrics: metrics[score_key]["accuracy"],
        steps,
        batches,
    )


def audio_stage(
    cfg: TrainConfig, model: EmotionModel, cluster: Cluster, speech: list[Sample] | None = None
) -> Stage:
    """Clips of every speech corpus (or of `speech`, samples already chosen), drawn balanced
    and augmented; a corpus's clips are scored only over its own classes. Selection on the
    mean validation UAR over the corpora (each corpus counts once, whatever its size)."""
    audio_cfg = audio_config(model)
    if speech is None:
        corpus = speech_corpus(cfg.speech_paths, audio_cfg, cfg.cache_path)
    else:
        corpus = decode_audio(speech, audio_cfg, cfg.cache_path)
    train, val = corpus.select("train"), corpus.select("val")
    if len(train) == 0 or len(val) == 0:
        raise DataError("audio pre-training needs speech clips in the 'train' and 'val' splits")
    aug = PRESETS[cfg.speech_augment]
    val_sets = audio_sets(val, audio_cfg)
    per_corpus = [s.name for s in val_sets[1:]] or ["audio_only"]

    def score(metrics: dict[str, dict]) -> float:
        if per_corpus == ["audio_only"]:
            return metrics["audio_only"]["accuracy"]
        return float(np.mean([metrics[k]["uar"] for k in per_corpus]))

    if isinstance(model.audio, WhisperVoice):  # frozen blocks: train on their mean steps
        check_options(cfg)
        states = window_states(
            model.audio, train, audio_cfg, aug, cfg.audio_bank, cfg.seed, cfg.cache_path
        )
        draws = cfg.audio_repeats * len(train)
        steps, pooled = pooled_batches(
            standardised(states, train, model), train, draws, cfg.batch_size
        )
        stage = single_modality_stage(
            "audio", cfg, model, cluster, train.labels, val_sets, score, steps, pooled
        )
        stage.module = PooledVoice(model)
        stage.predictor = pooled_validation(model.audio, val_sets[0].audio)
        return stage
    if cfg.audio_mixstyle:
        model.audio.mixstyle.p = cfg.audio_mixstyle
    dataset = AudioTrainSet(
        train, audio_cfg, cfg.audio_repeats, cfg.seed, aug, bank=cfg.audio_bank, workers=cfg.workers
    )
    steps = len(epoch_loader(dataset, cfg, cluster, torch.Generator(), 0))
    log.info(
        "speech: %s",
        ", ".join(
            f"{c} {int((train.corpora == c).sum())} train / {int((val.corpora == c).sum())} val"
            for c in np.unique(corpus.corpora)
        ),
    )

    states = None
    if cfg.audio_encoder_kd:
        encoded = encoder_states(
            train.data, audio_cfg.sample_rate, cfg.cache_path, cfg.audio_encoder
        )
        if cfg.audio_encoder_centre == "speaker":
            encoded = centre_by_speaker(encoded, train.corpora, train.persons)
        elif cfg.audio_encoder_centre == "corpus":
            encoded = standardise_by_corpus(encoded, train.corpora)
        elif cfg.audio_encoder_centre == "all":
            encoded = standardise(encoded)
        states = torch.from_numpy(encoded).to(cluster.device)

    # the targets of the training-only objectives, by training clip (VoiceObjectives' order)
    per_clip = [] if states is None else [states]
    corpus_names, corpus_of_clip = np.unique(train.corpora, return_inverse=True)
    if cfg.audio_adversary:
        if len(corpus_names) < 2:
            raise DataError("--audio-adversary needs at least two training corpora to tell apart")
        per_clip.append(torch.from_numpy(corpus_of_clip).long().to(cluster.device))

    def batches(epoch: int, gen: torch.Generator) -> Iterator[Batch]:
        dataset.epoch = epoch
        dataset.prepare()  # here, not in each epoch's loader workers
        for x, labels, support, clips in epoch_loader(dataset, cfg, cluster, gen, epoch):
            x = spec_augment(x.to(cluster.device), gen)
            clips = clips.to(cluster.device)
            yield (x, *(target[clips] for target in per_clip)), labels, support

    stage = single_modality_stage(
        "audio", cfg, model, cluster, train.labels, val_sets, score, steps, batches
    )
    if per_clip:
        stage.module = VoiceObjectives(
            model,
            cfg.audio_encoder_kd,
            cfg.audio_adversary,
            len(corpus_names),
            0 if states is None else states.shape[1],
        )
        stage.aux = stage.module.aux
    return stage


def single_modality_stage(
    modality: str,
    cfg: TrainConfig,
    model: EmotionModel,
    cluster: Cluster,
    labels: np.ndarray,
    val_sets: list[EvalSet],
    score: Callable[[dict[str, dict]], float],
    steps: int,
    batches: Callable[[int, torch.Generator], Iterator[Batch]],
) -> Stage:
    """A stage on one modality's own logits: (class-weighted, or per-corpus restricted)
    cross-entropy, mixed with distillation from the teacher's logits for that modality. The
    other modality's branch (and its logits in a late-fusion head) is left as it is."""
    log.info(
        "%s pre-training: %d training samples · val %d",
        modality,
        steps * cfg.batch_size,
        len(val_sets[0]),
    )
    weights = class_weights(labels, cfg.class_balance).to(cluster.device)
    teacher = load_teacher(cfg, cluster)  # distils its output for this modality alone

    def loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        (x, *_), targets, support = batch
        if support is None:
            own = F.cross_entropy(
                logits, targets, weight=weights, label_smoothing=cfg.label_smoothing
            )
        else:
            own = restricted_cross_entropy(logits, targets, support, cfg.label_smoothing)
        if teacher is None:
            return own
        with torch.no_grad():
            soft = modality_logits(teacher, modality)(x)
        kd = distillation_loss(logits, soft, targets, cfg.kd_temperature, alpha=1.0)
        return cfg.kd_alpha * kd + (1 - cfg.kd_alpha) * own

    other = "audio" if modality == "face" else "face"
    if isinstance(model.head, LateFusionHead):
        # the other modality's logits run under a zero mask: their gradients are zeros, which
        # would let weight decay shrink them through every epoch of this stage
        getattr(model.head, f"{other}_logits").requires_grad_(False)
    return Stage(
        modality,
        OneModality(model, modality),
        batches,
        steps,
        loss,
        val_sets,
        lambda metrics: round(score(metrics), 2),
        frozen=(other,),
        record_uar=True,
    )
