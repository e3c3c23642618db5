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
from distill.corpora import load_corpus
from distill.distributed import Cluster
from distill.evaluate import evaluate
from distill.loop import Run, Tally, load_teacher, prepare_model
from distill.models import EmotionModel, distillation_loss
from distill.pairing import AudioTrainSet, EvalSet, audio_only_set, face_only_set
from distill.train import epoch_loader, load_faces, torch_predictor
from edge.errors import DataError
from edge.labels import NUM_CLASSES

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


@dataclass
class Modality:
    """What one pre-training stage reads: its training batches, validation set and loss."""

    name: str
    labels: np.ndarray
    val_set: EvalSet
    steps_per_epoch: int
    batches: Callable[[int, torch.Generator], Iterator[tuple[torch.Tensor, torch.Tensor]]]
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
    faces = load_faces(Path(cfg.faces), "train", cfg.cache_path, cfg.max_train_faces)
    val_set = face_only_set(
        load_faces(Path(cfg.faces), "val", cfg.cache_path, cfg.max_eval_faces), run.audio_cfg
    )
    data, labels = torch.from_numpy(faces.data), torch.from_numpy(faces.labels)
    cluster = run.cluster
    steps = max(1, len(labels) // cluster.world // cfg.batch_size)

    def batches(epoch: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(labels), generator=gen)[cluster.shard(len(labels))]
        for i in range(steps):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            yield data[idx], labels[idx]

    def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return augment_faces(faces_to_input(x, run.face_cfg), gen, cfg.face_augment)

    return Modality("face", faces.labels, val_set, steps, batches, augment, face_only_logits)


def audio_modality(cfg: TrainConfig, run: Run) -> Modality:
    corpus = decode_audio(load_corpus(Path(cfg.speech), "audio"), run.audio_cfg, cfg.cache_path)
    train, val = corpus.select("train"), corpus.select("val")
    if len(train) == 0 or len(val) == 0:
        raise DataError("audio pre-training needs speech clips in the 'train' and 'val' splits")
    dataset = AudioTrainSet(train, run.audio_cfg, cfg.audio_repeats, seed=cfg.seed)
    steps = len(epoch_loader(dataset, cfg, run.cluster, torch.Generator(), 0))

    def batches(epoch: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dataset.epoch = epoch
        yield from epoch_loader(dataset, cfg, run.cluster, gen, epoch)

    val_set = audio_only_set(val, run.audio_cfg)
    return Modality("audio", train.labels, val_set, steps, batches, spec_augment, audio_only_logits)


def pretrain(cfg: TrainConfig, cluster: Cluster | None = None) -> dict:
    """Run (or resume) single-modality pre-training; returns the best validation accuracy."""
    cluster = cluster or Cluster()
    model = prepare_model(cfg).to(cluster.device)
    optimizer = torch.optim.AdamW(model.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    run = Run(cfg, model, optimizer, cluster)
    modality = (face_modality if cfg.stage == "face" else audio_modality)(cfg, run)
    net = cluster.wrap(SingleModality(model, modality.logits))
    name = modality.name
    log.info(
        "%s pre-training: %d training samples · val %d",
        name,
        modality.steps_per_epoch * cfg.batch_size,
        len(modality.val_set),
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
        for i, (x, labels) in enumerate(bar):
            x = modality.augment(x, gen).to(cluster.device)
            labels = labels.to(cluster.device)
            logits = net(x)
            loss = F.cross_entropy(
                logits, labels, weight=weights, label_smoothing=cfg.label_smoothing
            )
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
        metrics = evaluate(torch_predictor(run.selected_model), [modality.val_set], run.face_cfg)
        result = metrics[f"{name}_only"]
        record = {
            "epoch": epoch + 1,
            "stage": name,
            "train_loss": tally.loss,
            "train_acc": tally.accuracy,
            "val_score": result["accuracy"],
            "val": {f"{name}_only": result["accuracy"], f"{name}_only_uar": result["uar"]},
            "seconds": round(time.time() - t0, 1),
        }
        log.info(
            "%s epoch %d/%d loss %.3f · val %s_only %.2f (UAR %.2f) · %.0fs",
            name,
            epoch + 1,
            cfg.epochs,
            record["train_loss"],
            name,
            result["accuracy"],
            result["uar"],
            record["seconds"],
        )
        run.end_epoch(epoch, record, metrics, result["accuracy"])
    cluster.check_replicas(model)
    return run.result()
