"""Face-only pre-training (`emoedge distill --stage face`): the face branch and the fusion head
on the FER2013 training faces alone, before the fused stage.

With the audio masked the fusion head multiplies the attended audio by 0, so
`face_only_logits` is exactly the model's face-only output, without running the audio branch.
Selection is on the face-only accuracy of the validation split.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from distill.augment import augment_faces, faces_to_input
from distill.config import TrainConfig
from distill.evaluate import evaluate
from distill.loop import Run, Tally, prepare_model
from distill.models import EmotionModel
from distill.pairing import face_only_set
from distill.train import load_faces, torch_predictor
from edge.labels import NUM_CLASSES

log = logging.getLogger(__name__)


def face_only_logits(model: EmotionModel, faces: torch.Tensor) -> torch.Tensor:
    """model(faces, any audio, mask [1, 0]) without computing the audio branch."""
    visual = model.face(faces)
    b = len(faces)
    mask = visual.new_tensor([1.0, 0.0]).expand(b, 2)
    attended = visual.new_zeros(b, model.attention.value.out_features)
    return model.head(visual, attended, mask)


def class_weights(labels: np.ndarray, power: float) -> torch.Tensor:
    """Cross-entropy weights ∝ class frequency^−power (0: plain CE, 1: fully balanced),
    scaled so the average weight over the training samples is 1."""
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(float)
    weights = np.where(counts > 0, np.maximum(counts, 1.0) ** -power, 0.0)
    weights *= counts.sum() / (weights * counts).sum()
    return torch.tensor(weights, dtype=torch.float32)


def pretrain_face(cfg: TrainConfig) -> dict:
    """Run (or resume) face-only pre-training; returns the best validation face accuracy."""
    model = prepare_model(cfg)
    run = Run(
        cfg, model, torch.optim.AdamW(model.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    )
    cache = Path(cfg.cache_dir) if cfg.cache_dir else None
    train_faces = load_faces(Path(cfg.faces), "train", cache, cfg.max_train_faces)
    val_set = face_only_set(
        load_faces(Path(cfg.faces), "val", cache, cfg.max_eval_faces), run.audio_cfg
    )
    log.info("face pre-training: %d train faces · val %d", len(train_faces), len(val_set))
    data = torch.from_numpy(train_faces.data)
    labels = torch.from_numpy(train_faces.labels)
    weights = class_weights(train_faces.labels, cfg.class_balance)
    steps_per_epoch = max(1, len(labels) // cfg.batch_size)
    gen = torch.Generator()
    for epoch in range(run.start_epoch, cfg.epochs):
        gen.manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(len(labels), generator=gen)
        model.train()
        t0, tally = time.time(), Tally()
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{cfg.arch} faces epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            leave=False,
        )
        for i in bar:
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            faces = augment_faces(faces_to_input(data[idx], run.face_cfg), gen)
            logits = face_only_logits(model, faces)
            loss = F.cross_entropy(
                logits, labels[idx], weight=weights, label_smoothing=cfg.label_smoothing
            )
            run.step(loss, epoch * steps_per_epoch + i, steps_per_epoch)
            tally.add(loss, logits, labels[idx])
            bar.set_postfix(**tally.postfix())

        metrics = evaluate(torch_predictor(model), [val_set], run.face_cfg)
        face = metrics["face_only"]
        record = {
            "epoch": epoch + 1,
            "stage": "face",
            "train_loss": tally.loss,
            "train_acc": tally.accuracy,
            "val_score": face["accuracy"],
            "val": {"face_only": face["accuracy"], "face_only_uar": face["uar"]},
            "seconds": round(time.time() - t0, 1),
        }
        log.info(
            "faces epoch %d/%d loss %.3f · val face_only %.2f (UAR %.2f) · %.0fs",
            epoch + 1,
            cfg.epochs,
            record["train_loss"],
            face["accuracy"],
            face["uar"],
            record["seconds"],
        )
        run.end_epoch(epoch, record, metrics, face["accuracy"])
    return run.result()
