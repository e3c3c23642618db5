"""The fused stage (`emoedge distill`, the default `--stage fused`): faces and voices together.

Each epoch pairs every training face with a same-class training speech window (see
`distill.pairing`; a face with FER+ votes takes a class drawn from them), applies modality
dropout, and trains with cross-entropy — or, given a teacher, with Hinton distillation on the
same augmented inputs. `--freeze-face` and `--freeze-audio` keep a branch (weights and
BatchNorm statistics) fixed, e.g. one joined from separately pre-trained paths (`--init`,
`--init-audio`). Selection is on the mean validation accuracy of face-only (FER+ majority where
voted), audio-only and fused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from distill.augment import augment_faces, faces_to_input, modality_mask, spec_augment
from distill.config import TrainConfig
from distill.data import epoch_loader, load_data
from distill.distributed import Cluster
from distill.fit import Batch, Stage
from distill.models import EmotionModel, audio_config, distillation_loss
from distill.pairing import PairedTrainSet, build_eval_sets, collate
from distill.run import load_teacher
from edge.vision.face import FaceConfig

log = logging.getLogger(__name__)


def fused_stage(cfg: TrainConfig, model: EmotionModel, cluster: Cluster) -> Stage:
    """Class-paired faces and voices, modality dropout, optional KD."""
    audio_cfg, face_cfg = audio_config(model), FaceConfig()
    train_faces, train_audio = load_data(
        Path(cfg.faces), cfg.speech_paths, "train", audio_cfg, cfg.cache_path, cfg.max_train_faces
    )
    val_faces, val_audio = load_data(
        Path(cfg.faces), cfg.speech_paths, "val", audio_cfg, cfg.cache_path, cfg.max_eval_faces
    )
    val_sets = build_eval_sets(val_faces, val_audio, audio_cfg)
    log.info(
        "train: %d faces, %d clips · val: %s",
        len(train_faces),
        len(train_audio),
        ", ".join(f"{s.name} {len(s)}" for s in val_sets),
    )
    teacher = load_teacher(cfg, cluster)
    dataset = PairedTrainSet(train_faces, train_audio, audio_cfg, seed=cfg.seed)
    # the faces (uint8) stay on the training device and are augmented there; the loader's
    # workers compute only the speech windows
    faces = torch.from_numpy(train_faces.data).to(cluster.device)

    def batches(epoch: int, gen: torch.Generator) -> Iterator[Batch]:
        dataset.epoch = epoch
        for face_idx, audio, labels in epoch_loader(dataset, cfg, cluster, gen, epoch, collate):
            faces_u8 = faces[face_idx.to(cluster.device)]
            inputs = (
                augment_faces(faces_to_input(faces_u8, face_cfg), gen, cfg.face_augment),
                spec_augment(audio.to(cluster.device), gen),
                modality_mask(len(labels), cfg.p_face_only, cfg.p_audio_only, gen),
            )
            yield inputs, labels, None

    def loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        inputs, labels, _ = batch
        return batch_loss(logits, labels, teacher, inputs, cfg)

    return Stage(
        "fused",
        model,
        batches,
        len(epoch_loader(dataset, cfg, cluster, torch.Generator(), 0, collate)),
        loss,
        val_sets,
        validation_score,
        frozen=tuple(b for b, on in (("face", cfg.freeze_face), ("audio", cfg.freeze_audio)) if on),
    )


def validation_score(metrics: dict[str, dict]) -> float:
    """Model selection: mean accuracy of face-only (against the FER+ majority where the faces
    have votes, as in the face stage), audio-only and fused."""
    face = "face_only_ferplus" if "face_only_ferplus" in metrics else "face_only"
    return float(np.mean([metrics[k]["accuracy"] for k in (face, "audio_only", "fused")]))


def batch_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher: EmotionModel | None,
    inputs: tuple[torch.Tensor, ...],
    cfg: TrainConfig,
) -> torch.Tensor:
    """Cross-entropy, or Hinton KD from a teacher on the same inputs. Without cfg.kd_face_only
    the face-only samples (audio masked) learn from their labels alone: where the teacher's
    face path is weaker than the student's, its soft targets would pull the student down."""
    if teacher is None:
        return F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
    mask = inputs[2]
    kd = torch.ones_like(labels, dtype=torch.bool) if cfg.kd_face_only else mask[:, 1] > 0
    total = logits.new_zeros(())
    if kd.any():
        with torch.no_grad():
            teacher_logits = teacher(*(x[kd] for x in inputs))
        soft = distillation_loss(
            logits[kd],
            teacher_logits,
            labels[kd],
            cfg.kd_temperature,
            cfg.kd_alpha,
            cfg.label_smoothing,
        )
        total = total + soft * kd.sum()
    if not kd.all():
        hard = F.cross_entropy(logits[~kd], labels[~kd], label_smoothing=cfg.label_smoothing)
        total = total + hard * (~kd).sum()
    return total / len(labels)
