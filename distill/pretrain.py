"""Single-modality pre-training (`emoedge distill --stage face|audio`) before the fused stage.

- face: the face branch and the fusion head on the FER2013 training faces alone.
- audio: the audio branch, the attention (a late-fusion student's pooling, or the concat
  head's missing-face query) and the head on the RAVDESS training clips alone; every clip is
  drawn `--audio-repeats` times an epoch with fresh augmentation (speed, crop, gain, noise,
  SpecAugment).

With `--teacher`, the loss adds Hinton distillation from the teacher's own output for that
modality (`--kd-alpha`, `--kd-temperature`) on the same augmented inputs.

With the other modality masked the model never reads it, so `face_only_logits` and
`audio_only_logits` are exactly the model's single-modality outputs without running the other
branch. Selection is on that modality's accuracy on the validation split.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from distill.augment import augment_faces, faces_to_input, spec_augment
from distill.cache import decode_audio
from distill.config import TrainConfig
from distill.corpora import Sample, load_speech
from distill.distributed import Cluster
from distill.evaluate import evaluate
from distill.ferplus import training_targets
from distill.loop import Run, Tally, load_teacher, prepare_model
from distill.models import EmotionModel, distillation_loss
from distill.pairing import AudioTrainSet, EvalSet, audio_sets, face_sets
from distill.speech_augment import PRESETS
from distill.train import epoch_loader, load_faces, torch_predictor
from edge.core.errors import DataError, UsageError
from edge.core.labels import NUM_CLASSES

log = logging.getLogger(__name__)


def face_only_logits(model: EmotionModel, faces: torch.Tensor) -> torch.Tensor:
    """model(faces, any audio, mask [1, 0]) without computing the audio branch."""
    visual = model.face(faces)
    b = len(faces)
    mask = visual.new_tensor([1.0, 0.0]).expand(b, 2)
    attended = visual.new_zeros(b, model.attention.value.out_features)
    return model.head(visual, attended, mask)


def audio_only_logits(model: EmotionModel, audio: torch.Tensor) -> torch.Tensor:
    """model(any face, audio, mask [0, 1]) without computing the face branch."""
    steps = model.audio(audio)
    b = len(audio)
    visual = steps.new_zeros(b, model.config.visual_dim)
    attended, _ = model.attention(visual, steps, steps.new_zeros(b, 1))
    return model.head(visual, attended, steps.new_tensor([0.0, 1.0]).expand(b, 2))


def class_weights(labels: np.ndarray, power: float) -> torch.Tensor:
    """Cross-entropy weights ∝ class frequency^−power (0: plain CE, 1: fully balanced),
    scaled so the average weight over the training samples is 1."""
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(float)
    weights = np.where(counts > 0, np.maximum(counts, 1.0) ** -power, 0.0)
    weights *= counts.sum() / (weights * counts).sum()
    return torch.tensor(weights, dtype=torch.float32)


# A modality's own output of a model, e.g. face_only_logits.
ModalityLogits = Callable[[EmotionModel, torch.Tensor], torch.Tensor]
# inputs, targets (class indices or distributions), classes each sample's corpus has (or None)
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


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


@dataclass
class Modality:
    """What one pre-training stage reads: its training batches (inputs and targets: class
    indices, or class distributions such as FER+ votes), validation sets and the validation
    metric that selects the best epoch."""

    name: str
    labels: np.ndarray
    val_sets: list[EvalSet]
    score: Callable[[dict[str, dict]], float]  # validation metrics → selection score
    steps_per_epoch: int
    batches: Callable[[int, torch.Generator], Iterator[Batch]]
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # a batch → model input
    logits: ModalityLogits


class SingleModality(nn.Module):
    """A model seen through one modality's logits, so that DDP wraps that forward pass."""

    def __init__(self, model: EmotionModel, logits: ModalityLogits):
        super().__init__()
        self.model, self.logits = model, logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.model, x)


def face_modality(cfg: TrainConfig, run: Run) -> Modality:
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
        load_faces(Path(cfg.faces), "val", cfg.cache_path, cfg.max_eval_faces), run.audio_cfg
    )
    data, labels = torch.from_numpy(faces.data), torch.from_numpy(soft)
    cluster = run.cluster
    steps = max(1, len(labels) // cluster.world // cfg.batch_size)

    def batches(epoch: int, gen: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(len(labels), generator=gen)[cluster.shard(len(labels))]
        for i in range(steps):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            yield data[idx], labels[idx], None

    def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return augment_faces(faces_to_input(x, run.face_cfg), gen, cfg.face_augment)

    score_key = val_sets[-1].name  # face_only_ferplus where there are votes
    return Modality(
        "face",
        faces.labels,
        val_sets,
        lambda metrics: metrics[score_key]["accuracy"],
        steps,
        batches,
        augment,
        face_only_logits,
    )


def audio_modality(cfg: TrainConfig, run: Run, speech: list[Sample] | None = None) -> Modality:
    """Clips of every speech corpus (or of `speech`, samples already chosen), drawn balanced
    and augmented; a corpus's clips are scored only over its own classes. Selection on the
    mean validation UAR over the corpora (each corpus counts once, whatever its size)."""
    samples = load_speech(cfg.speech_paths) if speech is None else speech
    corpus = decode_audio(samples, run.audio_cfg, cfg.cache_path)
    train, val = corpus.select("train"), corpus.select("val")
    if len(train) == 0 or len(val) == 0:
        raise DataError("audio pre-training needs speech clips in the 'train' and 'val' splits")
    if cfg.speech_augment not in PRESETS:
        raise UsageError(
            f"speech_augment {cfg.speech_augment!r}: allowed values are {', '.join(PRESETS)}"
        )
    aug = PRESETS[cfg.speech_augment]
    dataset = AudioTrainSet(
        train, run.audio_cfg, cfg.audio_repeats, cfg.seed, aug, bank=cfg.audio_bank
    )
    steps = len(epoch_loader(dataset, cfg, run.cluster, torch.Generator(), 0))
    log.info(
        "speech: %s",
        ", ".join(
            f"{c} {int((train.corpora == c).sum())} train / {int((val.corpora == c).sum())} val"
            for c in np.unique(corpus.corpora)
        ),
    )

    def batches(epoch: int, gen: torch.Generator) -> Iterator[Batch]:
        dataset.epoch = epoch
        yield from epoch_loader(dataset, cfg, run.cluster, gen, epoch)

    val_sets = audio_sets(val, run.audio_cfg)
    per_corpus = [s.name for s in val_sets[1:]] or ["audio_only"]

    def score(metrics: dict[str, dict]) -> float:
        if per_corpus == ["audio_only"]:
            return metrics["audio_only"]["accuracy"]
        return float(np.mean([metrics[k]["uar"] for k in per_corpus]))

    return Modality(
        "audio", train.labels, val_sets, score, steps, batches, spec_augment, audio_only_logits
    )


def pretrain(
    cfg: TrainConfig, cluster: Cluster | None = None, speech: list[Sample] | None = None
) -> dict:
    """Run (or resume) single-modality pre-training; returns the best validation score.
    `speech`: the audio stage's samples, when chosen already (distill.crosscorpus)."""
    cluster = cluster or Cluster()
    model = prepare_model(cfg).to(cluster.device)
    optimizer = torch.optim.AdamW(model.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    run = Run(cfg, model, optimizer, cluster)
    face = cfg.stage == "face"
    modality = face_modality(cfg, run) if face else audio_modality(cfg, run, speech)
    net = cluster.wrap(SingleModality(model, modality.logits))
    name = modality.name
    log.info(
        "%s pre-training: %d training samples · val %d",
        name,
        modality.steps_per_epoch * cfg.batch_size,
        len(modality.val_sets[0]),
    )
    weights = class_weights(modality.labels, cfg.class_balance).to(cluster.device)
    teacher = load_teacher(cfg, cluster)  # distils its output for this modality alone
    gen = torch.Generator()
    for epoch in range(run.start_epoch, cfg.epochs):
        gen.manual_seed(cfg.seed * 1000 + epoch)
        model.train()
        t0, tally = time.time(), Tally()
        bar = tqdm(
            modality.batches(epoch, gen),
            total=modality.steps_per_epoch,
            desc=f"{cfg.arch} {name} epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            leave=False,
            disable=not cluster.main,
        )
        for i, (x, labels, support) in enumerate(bar):
            x = modality.augment(x, gen).to(cluster.device)
            labels = labels.to(cluster.device)
            logits = net(x)
            if support is None:
                loss = F.cross_entropy(
                    logits, labels, weight=weights, label_smoothing=cfg.label_smoothing
                )
            else:
                support = support.to(cluster.device)
                loss = restricted_cross_entropy(logits, labels, support, cfg.label_smoothing)
            if teacher is not None:
                with torch.no_grad():
                    soft = modality.logits(teacher, x)
                kd = distillation_loss(logits, soft, labels, cfg.kd_temperature, alpha=1.0)
                loss = cfg.kd_alpha * kd + (1 - cfg.kd_alpha) * loss
            run.step(loss, epoch * modality.steps_per_epoch + i, modality.steps_per_epoch)
            tally.add(loss, logits, labels)
            bar.set_postfix(**tally.postfix())

        if not cluster.main:
            continue
        metrics = evaluate(torch_predictor(run.selected_model), modality.val_sets, run.face_cfg)
        score = round(modality.score(metrics), 2)
        record = {
            "epoch": epoch + 1,
            "stage": name,
            "train_loss": tally.loss,
            "train_acc": tally.accuracy,
            "val_score": score,
            "val": {
                **{k: m["accuracy"] for k, m in metrics.items()},
                **{f"{k}_uar": m["uar"] for k, m in metrics.items()},
            },
            "seconds": round(time.time() - t0, 1),
        }
        log.info(
            "%s epoch %d/%d loss %.3f · val %s · %.0fs",
            name,
            epoch + 1,
            cfg.epochs,
            record["train_loss"],
            " · ".join(f"{k} {v:.2f}" for k, v in record["val"].items()),
            record["seconds"],
        )
        run.end_epoch(epoch, record, metrics, score)
    cluster.check_replicas(model)
    return run.result()
