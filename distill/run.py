"""A training run's bookkeeping: model set-up, the LR schedule, resuming, per-epoch saving.

A run folder holds `last.pt` (model, optimizer, the weight average if any, epoch, best score,
history: resumable), `best.pt` (an emoedge checkpoint, written whenever the validation score
improves) and `history.json`. With `--ema DECAY` an exponential moving average of the weights
and BatchNorm statistics is what gets validated and saved as `best.pt`; its decay warms up
(`warmup_ema`), so that a short run validates what it trained, not its initial weights.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from distill.checkpoint import load_checkpoint, plain_data, save_checkpoint
from distill.config import TrainConfig
from distill.distributed import Cluster
from distill.models import (
    EmotionModel,
    LateFusionHead,
    Student,
    build_model,
    count_parameters,
    face_block_positions,
    model_config,
)
from edge.audio.frontend import AudioConfig
from edge.core.errors import UsageError
from edge.vision.face import FaceConfig

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


def prepare_model(cfg: TrainConfig) -> EmotionModel:
    """Seeds, threads and the model: a fresh one, or the model of cfg.init (its architecture
    config and weights) to continue from an earlier stage."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    if not cfg.init:
        model = build_model(cfg.arch, cfg.model_config)
        log.info("%s: %d parameters", cfg.arch, count_parameters(model))
        return model
    init, meta = load_checkpoint(Path(cfg.init))
    if meta["arch"] != cfg.arch:
        raise UsageError(f"--init {cfg.init} is a {meta['arch']} checkpoint, not {cfg.arch}")
    model = build_model(cfg.arch, {**meta["config"], **cfg.model_config})
    fresh = copy_matching_weights(weights_for(init, model), model)
    log.info(
        "%s: %d parameters, initialised from %s%s",
        cfg.arch,
        count_parameters(model),
        cfg.init,
        f" except {', '.join(fresh)} (new)" if fresh else "",
    )
    if cfg.init_audio:
        audio, audio_meta = load_checkpoint(Path(cfg.init_audio))
        if audio_meta["arch"] != cfg.arch:
            kind = audio_meta["arch"]
            raise UsageError(
                f"--init-audio {cfg.init_audio} is a {kind} checkpoint, not {cfg.arch}"
            )
        missing = copy_matching_weights(audio, model, AUDIO_PATH)
        if missing:
            raise UsageError(
                f"--init-audio {cfg.init_audio}: its audio path does not fit this model "
                f"({', '.join(missing)})"
            )
        copy_voice_temperature(audio, model)
        log.info("audio path (%s) from %s", ", ".join(AUDIO_PATH), cfg.init_audio)
    if cfg.reset_audio:
        fresh_model = build_model(cfg.arch, model_config(model))
        copy_matching_weights(fresh_model, model, AUDIO_PATH)
        copy_voice_temperature(fresh_model, model)
        log.info("audio path (%s) from fresh weights (--reset-audio)", ", ".join(AUDIO_PATH))
    return model


@torch.no_grad()
def copy_voice_temperature(source: EmotionModel, model: EmotionModel) -> None:
    """Give `model` the calibrated voice temperature of the model its audio path came from
    (1, uncalibrated, where that is not a late-fusion model): the temperature belongs to that
    voice, and a voice stage trains through it."""
    if isinstance(model.head, LateFusionHead):
        own = isinstance(source.head, LateFusionHead)
        model.head.log_temperature[1] = source.head.log_temperature[1] if own else 0.0


def load_teacher(cfg: TrainConfig, cluster: Cluster) -> EmotionModel | None:
    """The frozen teacher of cfg.teacher on this process's device, or None without one."""
    if not cfg.teacher:
        return None
    teacher, _ = load_checkpoint(Path(cfg.teacher))
    return teacher.requires_grad_(False).to(cluster.device)


# The weights of the audio path: branch, attention (pooling or cross-modal), and a late-fusion
# audio head.
AUDIO_PATH = ("audio.", "attention.", "head.audio_logits.")


def weights_for(init: EmotionModel, model: EmotionModel) -> dict[str, torch.Tensor]:
    """`init`'s weights under `model`'s names. Where `model`'s face is `init`'s deepened
    (residual blocks inserted, `face_block_positions`), each of `init`'s face blocks moves to
    its place among `model`'s, and the inserted blocks are left to their near-identity start;
    otherwise the names are kept."""
    weights = init.state_dict()
    if not isinstance(init, Student) or not isinstance(model, Student):
        return weights
    old, new = init.config.face_blocks, model.config.face_blocks
    stem = init.config.face_stem
    positions = face_block_positions(stem, old, new) if stem == model.config.face_stem else None
    if old == new or positions is None:
        return weights
    first = len(init.face.features) - len(old)  # the stem's layers come first
    moved = {
        f"face.features.{first + i}.": f"face.features.{first + p}."
        for i, p in enumerate(positions)
    }
    renamed = {}
    for name, tensor in weights.items():
        head = ".".join(name.split(".")[:3]) + "."  # face.features.<index>.
        renamed[name.replace(head, moved[head], 1) if head in moved else name] = tensor
    return renamed


def copy_matching_weights(
    source: torch.nn.Module | dict[str, torch.Tensor],
    target: torch.nn.Module,
    prefixes: tuple[str, ...] = ("",),
) -> list[str]:
    """Copy the tensors of `source` (a module or a state dict) under `prefixes` whose name and
    shape match; returns the names under `prefixes` left as they were."""
    have = source if isinstance(source, dict) else source.state_dict()
    state = target.state_dict()
    wanted = [k for k in state if k.startswith(prefixes)]
    fresh = [k for k in wanted if k not in have or have[k].shape != state[k].shape]
    target.load_state_dict({**state, **{k: have[k] for k in wanted if k not in fresh}})
    return fresh


def warmup_ema(decay: float) -> Callable[[list, list, torch.Tensor], None]:
    """An `AveragedModel` update whose decay after n updates is min(decay, (1 + n)/(10 + n))
    (TensorFlow's ExponentialMovingAverage with num_updates): a fixed 0.999 keeps a third of
    the initial weights after 1,000 steps, all a scaled-down run may have."""

    @torch.no_grad()
    def update(average: list, current: list, num_averaged: torch.Tensor) -> None:
        n = int(num_averaged)
        get_ema_multi_avg_fn(min(decay, (1 + n) / (10 + n)))(average, current, num_averaged)

    return update


@dataclass
class Run:
    """The run folder and the state that survives a restart."""

    cfg: TrainConfig
    model: EmotionModel
    optimizer: torch.optim.Optimizer
    cluster: Cluster = field(default_factory=Cluster)
    aux: nn.Module | None = None  # a stage's training-only module (distill.fit.Stage.aux)
    audio_cfg: AudioConfig = field(default_factory=AudioConfig)
    face_cfg: FaceConfig = field(default_factory=FaceConfig)
    start_epoch: int = 0
    best: float = -1.0
    history: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.average = None
        if self.cfg.ema:
            self.average = AveragedModel(
                self.model, multi_avg_fn=warmup_ema(self.cfg.ema), use_buffers=True
            )
        self.out = Path(self.cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        last = self.out / "last.pt"
        if self.cfg.resume and last.exists():
            state = torch.load(last, map_location=self.cluster.device, weights_only=True)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.aux is not None and "aux" in state:
                self.aux.load_state_dict(state["aux"])
            if self.average is not None and "average" in state:
                self.average.load_state_dict(state["average"])
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
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        self.optimizer.step()
        if self.average is not None:
            self.average.update_parameters(self.model)

    @property
    def selected_model(self) -> EmotionModel:
        """The model that is validated and saved: the weight average, or the model itself."""
        return self.model if self.average is None else self.average.module

    def end_epoch(self, epoch: int, record: dict, metrics: dict, score: float) -> None:
        """Record the epoch; write best.pt when the score improved, then last.pt (the main
        process only)."""
        if not self.cluster.main:
            return
        self.history.append(record)
        if score > self.best:
            self.best = float(score)
            save_checkpoint(
                self.out / "best.pt",
                self.selected_model,
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
                **({} if self.average is None else {"average": self.average.state_dict()}),
                **({} if self.aux is None else {"aux": self.aux.state_dict()}),
                "epoch": epoch,
                "best": self.best,
                "history": plain_data(self.history),
            },
            self.out / "last.tmp",
        )
        (self.out / "last.tmp").replace(self.out / "last.pt")
        (self.out / "history.json").write_text(json.dumps(self.history, indent=1))

    def result(self) -> dict:
        return {"best_val_score": self.best, "history": self.history}
