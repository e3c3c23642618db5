"""Calibration of a late-fusion student (`emoedge distill --stage calibrate`), on the
validation split, everything else fixed:

0. a class-prior correction of the face head (logit adjustment): training on FER+ votes teaches
   FER2013's class frequencies (a third of the votes say neutral), which costs recall on the
   rarer emotions; `logits − τ·log prior` with τ chosen on validation (mean of accuracy and
   UAR, FER+ majority where there are votes; τ = 0 is kept when nothing helps);
1. a temperature per branch (Guo et al. 2017), fitted by cross-entropy on that modality's own
   validation set (the faces by their FER+ majority where there are votes, the labels the face
   trains for, else by their single labels; audio-only clips of every speech corpus), so that
   each branch's confidence means what it says; expected calibration error (ECE) before and
   after is recorded. The voice may instead take the temperature a cross-corpus run fitted on
   corpora it never trained on (--voice-temperature-from; distill.crosscorpus): validation
   voices come from the training corpora, where the voice is surer than anywhere else;
2. the reliability-aware fusion (distill.models.LateFusionHead): the gate weights, which turn
   each branch's certainty on an input into its weight, fitted by cross-entropy on the
   validation split's class-paired pairs together with the same pairs with shuffled voices
   (with_uninformative_voices), with a weak pull towards equal gates. The shuffled pairs weigh
   λ times the real ones, λ the smallest of SHUFFLED_VOICE_WEIGHTS for which the fitted fusion
   costs the face at most GUARD_ALLOWANCE points on the validation pairs with voices shuffled
   afresh (fit_guarded_fusion): validation alone says how far the voice may be trusted when it
   says nothing (a fit at 1 : 1 trusted a strong validation voice enough to cost the face 2.4
   points on a held-out corpus, docs/voice-cross-corpus.md). The fused bias is set to
   zero and not fitted: validation voices come from the training corpora, so a class bias
   fitted there learns their confusions and shifts every fused prediction on speech from
   elsewhere (leave-one-corpus-out with RAVDESS held out: fused 56.4 % against the face's
   63.0 % with a fitted bias; without it every held-out corpus passes, MODEL_CARD.md).

On its own training data each path is more confident than on new people and new corpora, so
these numbers are never fitted on training data. The test split stays held out.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from distill.checkpoint import save_checkpoint
from distill.config import TrainConfig
from distill.data import load_data, load_faces
from distill.evaluate import (
    TorchPredictor,
    evaluate,
    expected_calibration_error,
    predict_set,
    scores,
    summary_line,
    torch_predictor,
)
from distill.ferplus import training_targets
from distill.models import RELIABILITY_UNIT, EmotionModel, LateFusionHead, audio_config
from distill.pairing import EvalSet, build_eval_sets
from distill.run import prepare_model
from edge.core.errors import DataError, UsageError
from edge.core.labels import NUM_CLASSES
from edge.vision.face import FaceConfig

log = logging.getLogger(__name__)


@torch.no_grad()
def branch_logits(
    model: EmotionModel,
    es: EvalSet,
    face_cfg: FaceConfig,
    batch_size: int = 256,
    states: dict[bytes, np.ndarray] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The uncalibrated face and voice logits of a late-fusion model for an evaluation set,
    computed `batch_size` samples at a time (predict_set's batches); `states` as
    TorchPredictor's."""
    model.eval()
    head = model.head
    assert isinstance(head, LateFusionHead)

    def both(face: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor, *norm) -> torch.Tensor:
        features = model.features(face, audio, torch.ones(len(face), 2), *norm)
        return torch.cat(head.branch_logits(*features), 1)

    predictor = TorchPredictor(model, both, states)
    logits = torch.from_numpy(predict_set(predictor, es, face_cfg, batch_size))
    return logits[:, :NUM_CLASSES], logits[:, NUM_CLASSES:]


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T minimising the cross-entropy of logits / T (log T fitted, so T > 0)."""
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def fit_fusion(
    head: LateFusionHead,
    face: torch.Tensor,
    voice: torch.Tensor,
    labels: torch.Tensor,
    prior: float = 1e-3,
    sample_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gate weights (2, 3) of `head` minimising the cross-entropy of its fusion of calibrated
    log-probabilities `face`, `voice` on fused pairs (a weighted mean where `sample_weights`
    are given), plus `prior` times the squared distance from equal unit gates (keeps a fit on a
    few separable pairs finite). The head itself is left unchanged."""
    start = head.reliability.clone()
    weights = start.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([weights], max_iter=200, line_search_fn="strong_wolfe")
    both = torch.ones(len(face), 2)
    if sample_weights is None:
        sample_weights = torch.ones(len(face))
    sample_weights = sample_weights / sample_weights.sum()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        with gate_weights(head, weights):
            losses = F.cross_entropy(head.fuse(face, voice, both), labels, reduction="none")
        loss = (sample_weights * losses).sum() + prior * (weights - start).square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach()


def with_uninformative_voices(
    face: torch.Tensor, voice: torch.Tensor, labels: torch.Tensor, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The validation pairs twice: as they are, and with the voices shuffled among the pairs
    (a voice that says nothing about the face's class). Validation voices come from the
    training corpora, where the voice is good; on speech unlike them it can be no better than
    chance while still sounding sure, and a fusion fitted on good voices alone then drags the
    face down (leave-one-corpus-out, MODEL_CARD.md). Fitted on both halves, the gates weigh the
    voice by what it adds across both and lean on the face's own certainty."""
    shuffled = shuffled_voices(voice, seed)
    return torch.cat([face, face]), torch.cat([voice, shuffled]), torch.cat([labels, labels])


def shuffled_voices(voice: torch.Tensor, seed: int) -> torch.Tensor:
    """The voices in a seeded random order among the pairs."""
    return voice[torch.randperm(len(voice), generator=torch.Generator().manual_seed(seed))]


SHUFFLED_VOICE_WEIGHTS = (1, 2, 4, 8, 16, 32)
GUARD_ALLOWANCE = 1.0  # points: the fusion criterion's allowance (MODEL_CARD.md)
GUARD_CHECK_SEEDS = (100, 101, 102, 103)  # shuffles other than the fit's (seed 0)


@torch.no_grad()
def cost_to_the_face(
    head: LateFusionHead,
    weights: torch.Tensor,
    face: torch.Tensor,
    voice: torch.Tensor,
    labels: torch.Tensor,
) -> float:
    """Points of accuracy the fusion with gate `weights` loses against the face alone when the
    pairs' voices are shuffled (mean over GUARD_CHECK_SEEDS shuffles): what trusting a voice
    that says nothing costs."""
    face_accuracy = (face.argmax(1) == labels).float().mean()
    both = torch.ones(len(face), 2)
    drops = []
    with gate_weights(head, weights):
        for seed in GUARD_CHECK_SEEDS:
            fused = head.fuse(face, shuffled_voices(voice, seed), both)
            drops.append(face_accuracy - (fused.argmax(1) == labels).float().mean())
    return round(100 * float(torch.stack(drops).mean()), 2)


def fit_guarded_fusion(
    head: LateFusionHead, face: torch.Tensor, voice: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """Gate weights fitted on the pairs and the same pairs with shuffled voices weighted λ : 1
    (the smallest λ of SHUFFLED_VOICE_WEIGHTS whose fusion costs the face at most
    GUARD_ALLOWANCE points with voices shuffled afresh, else the largest), and a record of λ
    and the cost of every λ tried."""
    doubled = with_uninformative_voices(face, voice, labels)
    cost: dict[int, float] = {}
    for weight in SHUFFLED_VOICE_WEIGHTS:
        sample_weights = torch.cat([torch.ones(len(face)), torch.full((len(face),), float(weight))])
        fitted = fit_fusion(head, *doubled, sample_weights=sample_weights)
        cost[weight] = cost_to_the_face(head, fitted, face, voice, labels)
        if cost[weight] <= GUARD_ALLOWANCE:
            break
    record = {
        "shuffled_voice_weight": weight,
        "cost_to_the_face": cost,
        "allowance": GUARD_ALLOWANCE,
        "met": cost[weight] <= GUARD_ALLOWANCE,
    }
    return fitted, record


@contextmanager
def gate_weights(head: LateFusionHead, weights: torch.Tensor):
    """Temporarily use `weights` (a tensor that may require grad) as the head's reliability
    weights."""
    saved = head.reliability
    head.reliability = weights
    try:
        yield
    finally:
        head.reliability = saved


PRIOR_STRENGTHS = np.round(np.arange(0.0, 1.0001, 0.05), 2)


def fit_prior_correction(
    model: EmotionModel, faces: EvalSet, face_cfg: FaceConfig, prior: np.ndarray
) -> tuple[float, dict[float, float]]:
    """The strength τ of a class-prior correction of the face head (logit adjustment, Menon et
    al. 2021: logits − τ·log prior) that maximises the mean of accuracy and UAR on `faces`
    (validation); τ = 0 is no correction. Returns τ and the score of every τ tried."""
    raw = branch_logits(model, faces, face_cfg)[0].numpy()
    log_prior = np.log(np.maximum(prior, 1e-6))
    tried = {}
    for tau in PRIOR_STRENGTHS:
        result = scores((raw - tau * log_prior).argmax(1), faces.labels)
        tried[float(tau)] = round((result["accuracy"] + result["uar"]) / 2, 2)
    return max(tried, key=lambda t: (tried[t], -t)), tried


def calibrate_model(
    model: EmotionModel,
    sets: list[EvalSet],
    face_cfg: FaceConfig,
    face_prior: np.ndarray | None = None,
    voice_temperature: float | None = None,
) -> dict:
    """Fit, in place on validation sets (build_eval_sets), a late-fusion model's face
    class-prior correction (given the training faces' class prior), temperatures and fusion;
    returns what was fitted and the ECE of each branch before/after. A `voice_temperature`
    given is used instead of the one fitted on validation (still recorded)."""
    head = model.head
    if not isinstance(head, LateFusionHead):
        raise UsageError("calibration needs a late-fusion student (--fusion late)")
    by_name = {s.name: s for s in sets}
    missing = {"face_only", "audio_only", "fused"} - set(by_name)
    if missing:
        raise DataError(f"calibration needs validation {', '.join(sorted(missing))} data")
    correction: dict = {}
    faces = by_name.get("face_only_ferplus", by_name["face_only"])
    if face_prior is not None:
        tau, tried = fit_prior_correction(model, faces, face_cfg, face_prior)
        with torch.no_grad():  # folded into the face head's bias
            head.face_logits[-1].bias -= float(tau) * torch.from_numpy(np.log(face_prior)).float()
        correction = {"prior_correction": {"tau": tau, "selected_on": faces.name, "tried": tried}}
    temperatures, ece, fitted_on_validation = [], {}, {}
    for branch, (name, fitted_on) in enumerate((("face", faces), ("voice", by_name["audio_only"]))):
        raw = branch_logits(model, fitted_on, face_cfg)[branch]
        labels = torch.from_numpy(fitted_on.labels).long()
        fitted = fit_temperature(raw, labels)
        if branch == 1 and voice_temperature is not None:
            fitted_on_validation["voice"] = round(fitted, 4)
            fitted = voice_temperature
        temperatures.append(fitted)
        for when, t in (("before", 1.0), ("after", temperatures[-1])):
            probs = (raw / t).softmax(1).numpy()
            ece[f"{name}_{when}"] = expected_calibration_error(probs, labels.numpy())
    with torch.no_grad():
        head.log_temperature.copy_(torch.tensor(temperatures).log())
        head.reliability.fill_(0.0)
        head.reliability[:, 0] = RELIABILITY_UNIT
        head.fused_bias.zero_()
    pairs = by_name["fused"]
    face_pairs, voice_pairs = branch_logits(model, pairs, face_cfg)
    t = head.log_temperature.exp()
    face_lp = F.log_softmax(face_pairs / t[0], 1)
    voice_lp = F.log_softmax(voice_pairs / t[1], 1)
    labels = torch.from_numpy(pairs.labels).long()
    weights, guard = fit_guarded_fusion(head, face_lp, voice_lp, labels)
    with torch.no_grad():
        head.reliability.copy_(weights)
    return {
        "temperatures": [round(x, 4) for x in temperatures],
        "reliability": [[round(float(w), 4) for w in row] for row in weights],
        "fusion_guard": guard,
        "ece": {k: round(v, 2) for k, v in ece.items()},
        "face_temperature_fitted_on": faces.name,
        **(
            {"temperatures_fitted_on_validation": fitted_on_validation}
            if fitted_on_validation
            else {}
        ),
        **correction,
    }


def training_prior(cfg: TrainConfig) -> np.ndarray:
    """The class distribution the face path was trained on: the mean of its training targets
    (FER+ votes where there are, else labels)."""
    faces = load_faces(Path(cfg.faces), "train", cfg.cache_path)
    targets, keep = training_targets(faces.votes, faces.labels)
    return np.maximum(targets[keep].mean(0), 1e-6)


VOICE_TEMPERATURE_FILE = "voice-temperature.json"  # written by --stage crosscorpus


def read_voice_temperature(path: Path) -> float:
    """The voice temperature of speech never heard that a cross-corpus run (its folder, or
    its VOICE_TEMPERATURE_FILE) fitted on its held-out corpora."""
    file = path / VOICE_TEMPERATURE_FILE if path.is_dir() else path
    try:
        temperature = json.loads(file.read_text())["voice_temperature"]
    except FileNotFoundError:
        raise DataError(
            f"--voice-temperature-from {path}: no {VOICE_TEMPERATURE_FILE} there (written by "
            "--stage crosscorpus for a late-fusion student)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"--voice-temperature-from {file}: not readable ({error})") from None
    if not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
        raise DataError(f"--voice-temperature-from {file}: {temperature!r} is no temperature")
    return float(temperature)


def calibrate(cfg: TrainConfig) -> dict:
    """Fit the fusion of the --init late-fusion student on validation (its voice's temperature
    from --voice-temperature-from where given); writes OUT/best.pt."""
    voice_temperature = (
        read_voice_temperature(Path(cfg.voice_temperature_from))
        if cfg.voice_temperature_from
        else None
    )
    model = prepare_model(cfg)
    audio_cfg, face_cfg = audio_config(model), FaceConfig()
    faces, audio = load_data(
        Path(cfg.faces), cfg.speech_paths, "val", audio_cfg, cfg.cache_path, cfg.max_eval_faces
    )
    sets = build_eval_sets(faces, audio, audio_cfg)
    t0 = time.time()
    before = evaluate(torch_predictor(model), sets, face_cfg)
    fitted = calibrate_model(model, sets, face_cfg, training_prior(cfg), voice_temperature)
    metrics = evaluate(torch_predictor(model), sets, face_cfg)
    record = {
        "stage": "calibrate",
        **fitted,
        "val_before": {k: v["accuracy"] for k, v in before.items()},
        "val": {k: v["accuracy"] for k, v in metrics.items()},
        "seconds": round(time.time() - t0, 1),
    }
    log.info("calibrated %s · val before %s", fitted, summary_line(before))
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
