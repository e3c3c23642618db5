"""Training and knowledge distillation: one configuration dataclass, one plain loop.

Each epoch pairs every training face with a same-class training speech window (see
`distill.pairing`), applies modality dropout, and trains with cross-entropy — or, given a
teacher, with Hinton distillation on the same augmented inputs. A checkpoint is written
every epoch (`last.pt`, resumable) and whenever the validation score improves (`best.pt`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from distill.augment import augment_faces, faces_to_input, modality_mask, spec_augment
from distill.cache import Decoded, decode_audio, decode_faces
from distill.checkpoint import load_checkpoint, save_checkpoint
from distill.config import TrainConfig
from distill.corpora import load_corpus
from distill.evaluate import evaluate, summary_line
from distill.models import EmotionModel, build_model, count_parameters, distillation_loss
from distill.pairing import PairedTrainSet, build_eval_sets, collate
from edge.audio import AudioConfig
from edge.errors import DataError, UsageError
from edge.face import FaceConfig

log = logging.getLogger(__name__)


def load_data(
    faces: Path,
    speech: Path,
    split: str,
    audio_cfg: AudioConfig,
    cache_dir: Path | None = None,
    max_faces: int = 0,
) -> tuple[Decoded, Decoded]:
    """Decoded faces and speech of one split (optionally a seeded subset of the faces)."""
    face_all = decode_faces(load_corpus(faces, "face"), cache_dir)
    audio_all = decode_audio(load_corpus(speech, "audio"), audio_cfg, cache_dir)
    f, a = face_all.select(split), audio_all.select(split)
    for what, d in (("faces", f), ("speech clips", a)):
        if len(d) == 0:
            raise DataError(f"no {what} in the '{split}' split")
    if max_faces and len(f) > max_faces:
        idx = np.sort(np.random.default_rng(0).choice(len(f), max_faces, replace=False))
        f = Decoded(f.data[idx], f.labels[idx], f.splits[idx], f.persons[idx])
    return f, a


def _lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def torch_predictor(model: EmotionModel):
    """A numpy predictor (face, audio, mask) → probabilities for a PyTorch model."""

    @torch.no_grad()
    def predict(face: np.ndarray, audio: np.ndarray, mask: np.ndarray) -> np.ndarray:
        model.eval()
        logits = model(torch.from_numpy(face), torch.from_numpy(audio), torch.from_numpy(mask))
        return torch.softmax(logits, 1).numpy()

    return predict


def validation_score(metrics: dict[str, dict]) -> float:
    """Model selection: mean accuracy of face-only, audio-only and fused."""
    return float(np.mean([metrics[k]["accuracy"] for k in ("face_only", "audio_only", "fused")]))


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training; returns the best validation metrics."""
    if cfg.arch not in ("teacher", "student"):
        raise UsageError(f"--arch {cfg.arch!r}: allowed values are teacher, student")
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    audio_cfg, face_cfg = AudioConfig(), FaceConfig()
    cache = Path(cfg.cache_dir) if cfg.cache_dir else None

    train_faces, train_audio = load_data(
        Path(cfg.faces), Path(cfg.speech), "train", audio_cfg, cache, cfg.max_train_faces
    )
    val_faces, val_audio = load_data(
        Path(cfg.faces), Path(cfg.speech), "val", audio_cfg, cache, cfg.max_eval_faces
    )
    val_sets = build_eval_sets(val_faces, val_audio, audio_cfg)
    log.info(
        "train: %d faces, %d clips · val: %s",
        len(train_faces),
        len(train_audio),
        ", ".join(f"{s.name} {len(s)}" for s in val_sets),
    )

    model = build_model(cfg.arch, cfg.model_config)
    log.info("%s: %d parameters", cfg.arch, count_parameters(model))
    teacher = None
    if cfg.teacher:
        teacher, _ = load_checkpoint(Path(cfg.teacher))
        teacher.requires_grad_(False)

    dataset = PairedTrainSet(train_faces, train_audio, audio_cfg, seed=cfg.seed)
    steps_per_epoch = math.ceil(len(dataset) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, best, history = 0, -1.0, []
    last_path = out / "last.pt"
    if cfg.resume and last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        log.info("resumed from %s at epoch %d", last_path, start_epoch + 1)

    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(start_epoch, cfg.epochs):
        gen.manual_seed(cfg.seed * 1000 + epoch)
        dataset.epoch = epoch
        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=True,
            generator=gen,
            collate_fn=collate,
            num_workers=cfg.workers,
            drop_last=True,
        )
        model.train()
        t0, seen, loss_sum, correct = time.time(), 0, 0.0, 0
        bar = tqdm(
            loader, desc=f"{cfg.arch} epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False
        )
        for i, (faces_u8, audio, labels) in enumerate(bar):
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(
                    step, total_steps, int(cfg.warmup_epochs * steps_per_epoch), cfg.lr
                )
            faces = augment_faces(faces_to_input(faces_u8, face_cfg), gen)
            audio = spec_augment(audio, gen)
            mask = modality_mask(len(labels), cfg.p_face_only, cfg.p_audio_only, gen)
            logits = model(faces, audio, mask)
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(faces, audio, mask)
                loss = distillation_loss(
                    logits,
                    teacher_logits,
                    labels,
                    cfg.kd_temperature,
                    cfg.kd_alpha,
                    cfg.label_smoothing,
                )
            else:
                loss = F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            seen += len(labels)
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}")

        metrics = evaluate(torch_predictor(model), val_sets, face_cfg)
        score = validation_score(metrics)
        record = {
            "epoch": epoch + 1,
            "train_loss": round(loss_sum / max(seen, 1), 4),
            "train_acc": round(100 * correct / max(seen, 1), 2),
            "val_score": round(score, 2),
            "val": {k: v["accuracy"] for k, v in metrics.items()},
            "seconds": round(time.time() - t0, 1),
        }
        history.append(record)
        log.info(
            "epoch %d/%d loss %.3f · val %s · %.0fs",
            epoch + 1,
            cfg.epochs,
            record["train_loss"],
            summary_line(metrics),
            record["seconds"],
        )
        extra = {"train_config": asdict(cfg), "history": history}
        if score > best:
            best = score
            save_checkpoint(
                out / "best.pt",
                model,
                cfg.arch,
                audio_cfg,
                face_cfg,
                {"val": metrics, "epoch": epoch + 1},
                **extra,
            )
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "best": best,
                "history": history,
            },
            out / "last.tmp",
        )
        (out / "last.tmp").replace(last_path)
        (out / "history.json").write_text(json.dumps(history, indent=1))
    return {"best_val_score": best, "history": history}
