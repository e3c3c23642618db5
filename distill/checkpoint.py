"""Checkpoints: a model's weights with everything needed to rebuild and feed it.

A released checkpoint stores fp16 weights (half the size; loading casts back to fp32) with
its architecture config, label order, audio and face front-end configs and its metrics, all as
tensors and JSON types: it loads with `torch.load(weights_only=True)`, unpickling no objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from distill.models import RELIABILITY_UNIT, EmotionModel, build_model, model_config
from edge.audio.frontend import AudioConfig
from edge.core.errors import ModelError
from edge.core.labels import LABELS
from edge.vision.face import FaceConfig

FORMAT = "emoedge-checkpoint/1"


def save_checkpoint(
    path: Path,
    model: EmotionModel,
    arch: str,
    audio: AudioConfig,
    face: FaceConfig,
    metrics: dict[str, Any] | None = None,
    half: bool = True,
    **extra: Any,
) -> None:
    """Write the model and its front-end contract; `half` stores float weights as fp16."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v).cpu()
        for k, v in model.state_dict().items()
    }
    payload = {
        **plain_data(
            {
                "format": FORMAT,
                "arch": arch,
                "config": model_config(model),
                "labels": list(LABELS),
                "audio": audio.to_dict(),
                "face": face.to_dict(),
                "metrics": metrics or {},
                **extra,
            }
        ),
        "state_dict": state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def plain_data(value: Any) -> Any:
    """Metadata as JSON types only (numpy scalars and arrays become numbers and lists), so a
    checkpoint loads with `torch.load(weights_only=True)`: no pickled objects."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist()))


def load_checkpoint(path: Path) -> tuple[EmotionModel, dict[str, Any]]:
    """The model (fp32, eval mode) and the checkpoint's metadata."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise ModelError(f"cannot read checkpoint {path}: {error}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not an emoedge checkpoint (format {FORMAT})")
    if payload["labels"] != list(LABELS):
        raise ModelError(f"{path}: label order {payload['labels']} differs from {list(LABELS)}")
    model = build_model(payload["arch"], payload["config"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    model.load_state_dict(upgrade_gated_head(state))
    model.eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, meta


def upgrade_gated_head(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A late-fusion state dict of the earlier gated head (gate_face·face + gate_voice·voice +
    bias, all logits) in the reliability-aware head's terms, with the same predictions: a
    gate g scales a branch's logits as a temperature 1/g does, the certainty weights start at
    zero (unit gates) and the bias stays. Other state dicts are returned as they are."""
    if "head.gates" not in state:
        return state
    state = dict(state)
    gates = state.pop("head.gates")
    state["head.log_temperature"] = -gates.log()
    state["head.reliability"] = torch.tensor([[RELIABILITY_UNIT, 0.0, 0.0]] * 2)
    return state


def front_end(meta: dict[str, Any]) -> tuple[AudioConfig, FaceConfig]:
    """The audio and face configs a checkpoint was trained with."""
    return AudioConfig(**meta["audio"]), FaceConfig.from_dict(meta["face"])
