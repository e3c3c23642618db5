"""Validate an artifact through its edge backend against the PyTorch model on the test split:
accuracy per evaluation set, class agreement, largest logit difference, batch-1 latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from distill.evaluate import RunnerPredictor, TorchPredictor, predict_sets, scores
from distill.pairing import EvalSet
from edge.backends import load_artifact
from edge.vision.face import FaceConfig, normalize_face

Logits = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
LATENCY_WARMUP = 10
LATENCY_RUNS = 50


def torch_logits(model: torch.nn.Module) -> Logits:
    """A numpy logits function for a PyTorch model (adapting where its voice does)."""
    return TorchPredictor(model, output=model)


def median_latency_ms(fn: Logits, sample: tuple[np.ndarray, ...]) -> float:
    """Median wall time of one batch-1 call after a warm-up."""
    for _ in range(LATENCY_WARMUP):
        fn(*sample)
    times = []
    for _ in range(LATENCY_RUNS):
        t0 = time.perf_counter()
        fn(*sample)
        times.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(times)), 4)


def first_sample(sets: list[EvalSet], face_cfg: FaceConfig) -> tuple[np.ndarray, ...]:
    """The first fused sample (or the first sample at all) as batch-1 float inputs."""
    es = next((s for s in sets if s.name == "fused"), sets[0])
    face = normalize_face(es.faces[:1], face_cfg)
    return face, np.ascontiguousarray(es.audio[:1], np.float32), es.mask[:1].astype(np.float32)


def metrics(
    logits: dict[str, np.ndarray], sets: list[EvalSet], reference: dict[str, np.ndarray]
) -> dict:
    """Accuracy per set and parity with the reference logits over every sample."""
    per_set = {
        es.name: {
            k: v
            for k, v in scores(logits[es.name].argmax(1), es.labels).items()
            if k != "confusion"
        }
        for es in sets
    }
    ours = np.concatenate([logits[es.name] for es in sets])
    ref = np.concatenate([reference[es.name] for es in sets])
    return {
        "sets": per_set,
        "agreement": round(100 * float(np.mean(ours.argmax(1) == ref.argmax(1))), 2),
        "max_abs_logit_diff": float(np.abs(ours - ref).max()),
        "n": len(ref),
    }


def validate_pytorch(model: torch.nn.Module, sets: list[EvalSet], face_cfg: FaceConfig) -> tuple:
    """The reference: PyTorch logits per set, its metrics and its 1-thread latency."""
    fn = torch_logits(model)
    logits = predict_sets(fn, sets, face_cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        latency = median_latency_ms(fn, first_sample(sets, face_cfg))
    finally:
        torch.set_num_threads(threads)
    return logits, {**metrics(logits, sets, logits), "latency_ms": latency}


def validate_artifact(
    directory: Path, sets: list[EvalSet], face_cfg: FaceConfig, reference: dict[str, np.ndarray]
) -> dict:
    """Metrics of the artifact in `directory` through its edge backend, on one thread, one
    input a call."""
    runner = load_artifact(directory, threads=1)
    logits = predict_sets(RunnerPredictor(runner, logits=True), sets, face_cfg)
    return {
        **metrics(logits, sets, reference),
        "backend": runner.name,
        "latency_ms": median_latency_ms(runner.logits, first_sample(sets, face_cfg)),
    }
