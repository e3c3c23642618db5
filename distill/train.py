"""`emoedge distill`: run the stage a TrainConfig names, after validating it.

face / audio (distill.pretrain) and fused (distill.fused) are stages of the one training loop
(distill.fit), one process or several under torchrun; calibrate (distill.calibrate) and
crosscorpus (distill.crosscorpus) run in one process. `--init` starts a stage from an earlier
checkpoint (distill.run.prepare_model).
"""

from __future__ import annotations

from distill.calibrate import calibrate
from distill.config import TrainConfig
from distill.crosscorpus import crosscorpus
from distill.distributed import join, leave, world_size
from distill.fit import StageBuilder, fit
from distill.fused import fused_stage
from distill.pretrain import audio_stage, face_stage
from edge.core.errors import UsageError

TRAINED: dict[str, StageBuilder] = {"face": face_stage, "audio": audio_stage, "fused": fused_stage}


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) the stage cfg.stage; returns the best validation score and the history."""
    cfg.validate()
    if cfg.stage not in TRAINED:
        if world_size() > 1:
            raise UsageError(f"--stage {cfg.stage} runs in one process, not under torchrun")
        return calibrate(cfg) if cfg.stage == "calibrate" else crosscorpus(cfg)
    cluster = join()
    try:
        return fit(cfg, cluster, TRAINED[cfg.stage])
    finally:
        leave()
