"""Late-fusion calibration (`emoedge distill --stage calibrate`): the gates and the fused bias
of a late-fusion student, fitted on the validation split.

A late-fusion student's face and audio paths are trained apart (`--stage face`, `--stage
audio`). On its own training data each path is more confident than on new people, the audio
path most (1,080 clips of 18 actors), so weights fitted on training pairs would trust it too
much. The 9 numbers that combine the two (a gate per modality, a bias for the fused case) are
fitted instead by cross-entropy on the validation split's fused pairs, everything else fixed:
temperature scaling per modality. A positive gate only scales a modality's logits, so the
single-modality predictions keep their classes. The test split stays held out.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from distill.augment import faces_to_input
from distill.checkpoint import save_checkpoint
from distill.config import TrainConfig
from distill.evaluate import evaluate, summary_line
from distill.loop import prepare_model
from distill.models import EmotionModel, LateFusionHead
from distill.pairing import EvalSet, build_eval_sets
from distill.train import load_data, torch_predictor
from edge.audio import AudioConfig
from edge.errors import DataError, UsageError
from edge.face import FaceConfig

log = logging.getLogger(__name__)


@torch.no_grad()
def modality_logits(
    model: EmotionModel, pairs: EvalSet, face_cfg: FaceConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ungated face and audio logits of a late-fusion model for fused pairs."""
    model.eval()
    head = model.head
    assert isinstance(head, LateFusionHead)
    faces = torch.from_numpy(np.ascontiguousarray(pairs.faces))
    visual = model.face(faces_to_input(faces, face_cfg))
    steps = model.audio(torch.from_numpy(np.ascontiguousarray(pairs.audio)))
    attended, _ = model.attention(visual, steps, visual.new_ones(len(visual), 1))
    return head.face_logits(visual), head.audio_logits(attended)


def fit_fusion(
    face: torch.Tensor, audio: torch.Tensor, labels: torch.Tensor, prior: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gates (2,), positive, and fused bias (7,) minimising the cross-entropy of
    gate_face·face + gate_audio·audio + bias, plus `prior`·(log gates² + bias²): a weak pull
    towards gates of 1 and no bias, which keeps a fit on a few separable pairs finite."""
    log_gates = torch.zeros(2, requires_grad=True)
    bias = torch.zeros(face.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([log_gates, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        gates = log_gates.exp()
        loss = F.cross_entropy(gates[0] * face + gates[1] * audio + bias, labels)
        loss = loss + prior * (log_gates.square().sum() + bias.square().sum())
        loss.backward()
        return loss

    optimizer.step(closure)
    return log_gates.detach().exp(), bias.detach()


def calibrate(cfg: TrainConfig) -> dict:
    """Fit the fusion of the --init late-fusion student on validation; writes OUT/best.pt."""
    if not cfg.init:
        raise UsageError("--stage calibrate needs --init (a late-fusion student checkpoint)")
    model = prepare_model(cfg)
    if not isinstance(model.head, LateFusionHead):
        raise UsageError("--stage calibrate needs a late-fusion student (--fusion late)")
    audio_cfg, face_cfg = AudioConfig(), FaceConfig()
    faces, audio = load_data(
        Path(cfg.faces), Path(cfg.speech), "val", audio_cfg, cfg.cache_path, cfg.max_eval_faces
    )
    sets = build_eval_sets(faces, audio, audio_cfg)
    pairs = next((s for s in sets if s.name == "fused"), None)
    if pairs is None:
        raise DataError("no fused validation pairs: the classes of faces and speech do not meet")
    t0 = time.time()
    before = evaluate(torch_predictor(model), sets, face_cfg)
    face, audio_logits = modality_logits(model, pairs, face_cfg)
    gates, bias = fit_fusion(face, audio_logits, torch.from_numpy(pairs.labels).long())
    with torch.no_grad():
        model.head.gates.copy_(gates)
        model.head.fused_bias.copy_(bias)
    metrics = evaluate(torch_predictor(model), sets, face_cfg)
    record = {
        "stage": "calibrate",
        "gates": [round(float(g), 4) for g in gates],
        "fused_bias": [round(float(b), 4) for b in bias],
        "val_before": {k: v["accuracy"] for k, v in before.items()},
        "val": {k: v["accuracy"] for k, v in metrics.items()},
        "seconds": round(time.time() - t0, 1),
    }
    log.info("gates %s · val before %s", record["gates"], summary_line(before))
    log.info("val after %s", summary_line(metrics))
    out = Path(cfg.out)
    save_checkpoint(
        out / "best.pt",
        model,
        cfg.arch,
        audio_cfg,
        face_cfg,
        {"val": metrics},
        train_config=asdict(cfg),
        history=[record],
    )
    return {"best_val_score": metrics["fused"]["accuracy"], "history": [record]}
