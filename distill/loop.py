"""What every training stage shares: model set-up, the LR schedule, resuming, per-epoch saving.

A run folder holds `last.pt` (model, optimizer, epoch, best score, history: resumable),
`best.pt` (an emoedge checkpoint, written whenever the validation score improves) and
`history.json`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from distill.checkpoint import load_checkpoint, save_checkpoint
from distill.config import TrainConfig
from distill.models import EmotionModel, build_model, count_parameters
from edge.audio import AudioConfig
from edge.errors import UsageError
from edge.face import FaceConfig

log = logging.getLogger(__name__)


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to `peak`, then cosine decay to 0 at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass
class Tally:
    """Running training loss and accuracy over one epoch."""

    seen: int = 0
    loss_sum: float = 0.0
    correct: int = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.seen += len(labels)
        self.loss_sum += loss.item() * len(labels)
        self.correct += int((logits.argmax(1) == labels).sum().item())

    @property
    def loss(self) -> float:
        return round(self.loss_sum / max(self.seen, 1), 4)

    @property
    def accuracy(self) -> float:
        return round(100 * self.correct / max(self.seen, 1), 2)

    def postfix(self) -> dict[str, str]:
        """For the progress bar."""
        return {"loss": f"{self.loss:.3f}", "acc": f"{self.accuracy:.1f}"}


def prepare_model(cfg: TrainConfig) -> EmotionModel:
    """Seeds, threads and the model: a fresh one, or the model of cfg.init (its architecture
    config and weights) to continue from an earlier stage."""
    if cfg.arch not in ("teacher", "student"):
        raise UsageError(f"--arch {cfg.arch!r}: allowed values are teacher, student")
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    if cfg.init:
        model, meta = load_checkpoint(Path(cfg.init))
        if meta["arch"] != cfg.arch:
            raise UsageError(f"--init {cfg.init} is a {meta['arch']} checkpoint, not {cfg.arch}")
        log.info("initialised from %s", cfg.init)
    else:
        model = build_model(cfg.arch, cfg.model_config)
    log.info("%s: %d parameters", cfg.arch, count_parameters(model))
    return model


@dataclass
class Run:
    """The run folder and the state that survives a restart."""

    cfg: TrainConfig
    model: EmotionModel
    optimizer: torch.optim.Optimizer
    audio_cfg: AudioConfig = field(default_factory=AudioConfig)
    face_cfg: FaceConfig = field(default_factory=FaceConfig)
    start_epoch: int = 0
    best: float = -1.0
    history: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = Path(self.cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        last = self.out / "last.pt"
        if self.cfg.resume and last.exists():
            state = torch.load(last, map_location="cpu", weights_only=False)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.start_epoch, self.best = state["epoch"] + 1, state["best"]
            self.history = state["history"]
            log.info("resumed from %s at epoch %d", last, self.start_epoch + 1)

    def step(self, loss: torch.Tensor, index: int, steps_per_epoch: int) -> None:
        """One optimiser step at global step `index` of the run: the scheduled learning rate
        (warm-up, cosine), backpropagation, gradients clipped to norm 5."""
        cfg = self.cfg
        warmup = int(cfg.warmup_epochs * steps_per_epoch)
        set_lr(self.optimizer, lr_at(index, steps_per_epoch * cfg.epochs, warmup, cfg.lr))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.optimizer.step()

    def end_epoch(self, epoch: int, record: dict, metrics: dict, score: float) -> None:
        """Record the epoch; write best.pt when the score improved, then last.pt."""
        self.history.append(record)
        if score > self.best:
            self.best = score
            save_checkpoint(
                self.out / "best.pt",
                self.model,
                self.cfg.arch,
                self.audio_cfg,
                self.face_cfg,
                {"val": metrics, "epoch": epoch + 1},
                train_config=asdict(self.cfg),
                history=self.history,
            )
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "epoch": epoch,
                "best": self.best,
                "history": self.history,
            },
            self.out / "last.tmp",
        )
        (self.out / "last.tmp").replace(self.out / "last.pt")
        (self.out / "history.json").write_text(json.dumps(self.history, indent=1))

    def result(self) -> dict:
        return {"best_val_score": self.best, "history": self.history}
