"""The one training loop: `fit()` runs (or resumes) a stage described by a small `Stage` spec.

A stage (distill.fused, distill.pretrain) says what its batches are, what the model computes
on them, its loss and how validation picks the best epoch; `fit` does the rest, the same for
every stage: the model (distill.run.prepare_model), the optimizer and the scheduled learning
rate, per-epoch seeding, validation and saving (distill.run.Run), DDP under torchrun.

On a GPU the forward pass and the loss run under bf16 autocast (the weights, the optimizer and
validation stay fp32), and the running loss and accuracy stay on the GPU until the epoch ends;
on the CPU nothing of this applies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from distill.config import TrainConfig
from distill.distributed import Cluster
from distill.evaluate import Predictor, evaluate, torch_predictor
from distill.models import EmotionModel, audio_config
from distill.pairing import EvalSet
from distill.run import Run, prepare_model

log = logging.getLogger(__name__)

# model inputs (augmented), targets (class indices or class distributions), and the classes
# each sample's corpus has (or None)
Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor | None]


@dataclass
class Stage:
    """What one training stage feeds `fit`."""

    name: str  # the stage of the history records
    # what a batch's inputs go through: the model, or one modality of it; it returns logits,
    # or (logits, an auxiliary loss added to the stage's loss)
    module: nn.Module
    batches: Callable[[int, torch.Generator], Iterator[Batch]]  # (epoch, generator) → batches
    steps_per_epoch: int
    loss: Callable[[torch.Tensor, Batch], torch.Tensor]  # (logits, batch) → loss
    val_sets: list[EvalSet]
    score: Callable[[dict[str, dict]], float]  # validation metrics → selection score
    frozen: tuple[str, ...] = ()  # branches ("face", "audio") kept fixed
    record_uar: bool = False  # the history records each validation set's UAR too
    aux: nn.Module | None = None  # trained beside the model for the auxiliary loss, not saved
    # in the model's checkpoint (in last.pt, for --resume)
    predictor: Callable[[EmotionModel], Predictor] = torch_predictor  # what scores val_sets


# (config, the model to train, this process's place) → the stage (data and teacher loaded)
StageBuilder = Callable[[TrainConfig, EmotionModel, Cluster], Stage]


@dataclass
class Tally:
    """Running training loss and accuracy over one epoch, summed on the batches' device (no
    wait for the GPU per batch)."""

    seen: int = 0
    loss_sum: torch.Tensor | float = 0.0
    correct: torch.Tensor | int = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """One batch; targets are class indices (B,) or class distributions (B, classes),
        counted correct where the logits' top class is the distribution's."""
        labels = targets.argmax(1) if targets.ndim == 2 else targets
        self.seen += len(labels)
        self.loss_sum = self.loss_sum + loss.detach().double() * len(labels)
        self.correct = self.correct + (logits.argmax(1) == labels).sum()

    @property
    def loss(self) -> float:
        return round(float(self.loss_sum) / max(self.seen, 1), 4)

    @property
    def accuracy(self) -> float:
        return round(100 * int(self.correct) / max(self.seen, 1), 2)

    def postfix(self) -> dict[str, str]:
        """For the progress bar."""
        return {"loss": f"{self.loss:.3f}", "acc": f"{self.accuracy:.1f}"}


def fit(cfg: TrainConfig, cluster: Cluster, build: StageBuilder) -> dict:
    """Run (or resume) the stage `build` describes; returns the best validation score and the
    history."""
    model = prepare_model(cfg).to(cluster.device)
    stage = build(cfg, model, cluster)
    aux_params = [] if stage.aux is None else list(stage.aux.parameters())
    optimizer = torch.optim.AdamW(
        trainable(model, stage.frozen) + aux_params, cfg.lr, weight_decay=cfg.weight_decay
    )
    run = Run(cfg, model, optimizer, cluster, aux=stage.aux, audio_cfg=audio_config(model))
    net = cluster.wrap(stage.module)
    steps = stage.steps_per_epoch
    gen = torch.Generator()
    on_gpu = cluster.device.type == "cuda"
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    for epoch in range(run.start_epoch, cfg.epochs):
        gen.manual_seed(cfg.seed * 1000 + epoch)
        set_train_mode(model, stage.frozen)
        t0, tally = time.time(), Tally()
        bar = tqdm(
            stage.batches(epoch, gen),
            total=steps,
            desc=f"{cfg.arch} {stage.name} epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            leave=False,
            disable=not cluster.main,
        )
        for i, (inputs, targets, support) in enumerate(bar):
            inputs = tuple(x.to(cluster.device, non_blocking=True) for x in inputs)
            targets = targets.to(cluster.device, non_blocking=True)
            support = None if support is None else support.to(cluster.device)
            with torch.autocast(cluster.device.type, torch.bfloat16, enabled=on_gpu):
                output = net(*inputs)
                logits, aux_loss = output if isinstance(output, tuple) else (output, 0.0)
                loss = stage.loss(logits, (inputs, targets, support)) + aux_loss
            run.step(loss, epoch * steps + i, steps)
            tally.add(loss, logits, targets)
            if not on_gpu or i % 50 == 0:
                bar.set_postfix(**tally.postfix())

        if not cluster.main:
            continue
        metrics = evaluate(stage.predictor(run.selected_model), stage.val_sets, run.face_cfg)
        score = stage.score(metrics)
        record = {
            "epoch": epoch + 1,
            "stage": stage.name,
            "train_loss": tally.loss,
            "train_acc": tally.accuracy,
            "val_score": round(score, 2),
            "val": {
                **{k: m["accuracy"] for k, m in metrics.items()},
                **({f"{k}_uar": m["uar"] for k, m in metrics.items()} if stage.record_uar else {}),
            },
            "seconds": round(time.time() - t0, 1),
        }
        log.info(
            "%s epoch %d/%d loss %.3f · val %s · %.0fs",
            stage.name,
            epoch + 1,
            cfg.epochs,
            record["train_loss"],
            " · ".join(f"{k} {v:.2f}" for k, v in record["val"].items()),
            record["seconds"],
        )
        run.end_epoch(epoch, record, metrics, score)
    cluster.check_replicas(model)
    return run.result()


def trainable(model: EmotionModel, frozen: tuple[str, ...] = ()) -> list[nn.Parameter]:
    """The parameters the optimizer updates: all but those of the `frozen` branches."""
    model.face.requires_grad_("face" not in frozen)
    model.audio.requires_grad_("audio" not in frozen)
    return [p for p in model.parameters() if p.requires_grad]


def set_train_mode(model: EmotionModel, frozen: tuple[str, ...] = ()) -> None:
    """Training mode; a frozen branch stays in eval mode (its BatchNorm statistics fixed)."""
    model.train()
    if "face" in frozen:
        model.face.eval()
    if "audio" in frozen:
        model.audio.eval()
