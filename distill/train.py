"""Training and knowledge distillation: one configuration dataclass, one plain loop.

Each epoch pairs every training face with a same-class training speech window (see
`distill.pairing`), applies modality dropout, and trains with cross-entropy — or, given a
teacher, with Hinton distillation on the same augmented inputs. A checkpoint is written
every epoch (`last.pt`, resumable) and whenever the validation score improves (`best.pt`).
`--stage face` and `--stage audio` pre-train one path alone first (`distill.pretrain`);
`--init` starts a stage from an earlier checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from distill.augment import augment_faces, faces_to_input, modality_mask, spec_augment
from distill.cache import Decoded, decode_audio, decode_faces
from distill.config import TrainConfig
from distill.corpora import load_corpus, load_speech
from distill.distributed import Cluster, join, leave, world_size
from distill.evaluate import evaluate, summary_line
from distill.loop import Run, Tally, load_teacher, prepare_model
from distill.models import EmotionModel, distillation_loss
from distill.pairing import PairedTrainSet, build_eval_sets, collate
from edge.audio.frontend import AudioConfig
from edge.core.errors import DataError, UsageError

log = logging.getLogger(__name__)


def load_faces(
    faces: Path, split: str, cache_dir: Path | None = None, max_faces: int = 0
) -> Decoded:
    """Decoded faces of one split (optionally a seeded subset)."""
    f = decode_faces(load_corpus(faces, "face"), cache_dir).select(split)
    if len(f) == 0:
        raise DataError(f"no faces in the '{split}' split")
    if max_faces and len(f) > max_faces:
        idx = np.sort(np.random.default_rng(0).choice(len(f), max_faces, replace=False))
        f = f.take(idx)
    return f


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


def load_speech_split(
    speech: Path | Sequence[Path], split: str, audio_cfg: AudioConfig, cache_dir: Path | None
) -> Decoded:
    """Decoded clips of one split of one speech corpus or several."""
    paths = [speech] if isinstance(speech, (str, Path)) else list(speech)
    a = decode_audio(load_speech(paths), audio_cfg, cache_dir).select(split)
    if len(a) == 0:
        raise DataError(f"no speech clips in the '{split}' split")
    return a


def torch_predictor(model: EmotionModel):
    """A numpy predictor (face, audio, mask) → probabilities for a PyTorch model (on whatever
    device it is)."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def predict(face: np.ndarray, audio: np.ndarray, mask: np.ndarray) -> np.ndarray:
        model.eval()
        inputs = (torch.from_numpy(x).to(device) for x in (face, audio, mask))
        return torch.softmax(model(*inputs), 1).cpu().numpy()

    return predict


def validation_score(metrics: dict[str, dict]) -> float:
    """Model selection: mean accuracy of face-only, audio-only and fused."""
    return float(np.mean([metrics[k]["accuracy"] for k in ("face_only", "audio_only", "fused")]))


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) one training stage; returns the best validation metrics."""
    if cfg.stage in ("calibrate", "crosscorpus") and world_size() > 1:
        raise UsageError(f"--stage {cfg.stage} runs in one process, not under torchrun")
    if cfg.stage == "calibrate":
        from distill.calibrate import calibrate

        return calibrate(cfg)
    if cfg.stage == "crosscorpus":
        from distill.crosscorpus import crosscorpus

        return crosscorpus(cfg)
    if cfg.stage not in ("face", "audio", "fused"):
        raise UsageError(
            f"--stage {cfg.stage!r}: allowed values are face, audio, fused, calibrate, crosscorpus"
        )
    cluster = join()
    try:
        if cfg.stage == "fused":
            return train_fused(cfg, cluster)
        from distill.pretrain import pretrain

        return pretrain(cfg, cluster)
    finally:
        leave()


def train_fused(cfg: TrainConfig, cluster: Cluster) -> dict:
    """The fused stage: class-paired faces and voices, modality dropout, optional KD."""
    model = prepare_model(cfg).to(cluster.device)
    optimizer = torch.optim.AdamW(trainable(model, cfg), cfg.lr, weight_decay=cfg.weight_decay)
    run = Run(cfg, model, optimizer, cluster)
    net = cluster.wrap(model)
    audio_cfg, face_cfg = run.audio_cfg, run.face_cfg

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
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(run.start_epoch, cfg.epochs):
        gen.manual_seed(cfg.seed * 1000 + epoch)
        dataset.epoch = epoch
        loader = epoch_loader(dataset, cfg, cluster, gen, epoch, collate)
        steps_per_epoch = len(loader)
        set_train_mode(model, cfg)
        t0, tally = time.time(), Tally()
        bar = tqdm(
            loader,
            desc=f"{cfg.arch} epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            leave=False,
            disable=not cluster.main,
        )
        for i, (faces_u8, audio, labels) in enumerate(bar):
            inputs = (
                augment_faces(faces_to_input(faces_u8, face_cfg), gen, cfg.face_augment),
                spec_augment(audio, gen),
                modality_mask(len(labels), cfg.p_face_only, cfg.p_audio_only, gen),
            )
            inputs = tuple(x.to(cluster.device) for x in inputs)
            labels = labels.to(cluster.device)
            logits = net(*inputs)
            loss = batch_loss(logits, labels, teacher, inputs, cfg)
            run.step(loss, epoch * steps_per_epoch + i, steps_per_epoch)
            tally.add(loss, logits, labels)
            bar.set_postfix(**tally.postfix())

        if not cluster.main:
            continue
        metrics = evaluate(torch_predictor(run.selected_model), val_sets, face_cfg)
        score = validation_score(metrics)
        record = {
            "epoch": epoch + 1,
            "stage": "fused",
            "train_loss": tally.loss,
            "train_acc": tally.accuracy,
            "val_score": round(score, 2),
            "val": {k: v["accuracy"] for k, v in metrics.items()},
            "seconds": round(time.time() - t0, 1),
        }
        log.info(
            "epoch %d/%d loss %.3f · val %s · %.0fs",
            epoch + 1,
            cfg.epochs,
            record["train_loss"],
            summary_line(metrics),
            record["seconds"],
        )
        run.end_epoch(epoch, record, metrics, score)
    cluster.check_replicas(model)
    return run.result()


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
        drop_last=len(dataset) // cluster.world > cfg.batch_size,
    )


def batch_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher: EmotionModel | None,
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
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


def trainable(model: EmotionModel, cfg: TrainConfig) -> list[torch.nn.Parameter]:
    """The parameters the optimizer updates: all but the branches frozen by --freeze-face and
    --freeze-audio."""
    model.face.requires_grad_(not cfg.freeze_face)
    model.audio.requires_grad_(not cfg.freeze_audio)
    return [p for p in model.parameters() if p.requires_grad]


def set_train_mode(model: EmotionModel, cfg: TrainConfig) -> None:
    """Training mode; a frozen branch stays in eval mode (its BatchNorm statistics fixed)."""
    model.train()
    if cfg.freeze_face:
        model.face.eval()
    if cfg.freeze_audio:
        model.audio.eval()
