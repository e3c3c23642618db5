"""The voice's cross-corpus protocol (`emoedge distill --stage crosscorpus`).

In-corpus test splits hide how a voice model does on speech it never heard: other speakers,
languages, microphones and rooms. This protocol measures that:

- leave-one-corpus-out: for each speech corpus, the audio stage of the run's recipe (the same
  command) trains on the train splits of the other corpora and selects on their validation
  splits; with `--reset-audio` every fold's voice starts from nothing, without it from the
  --init checkpoint's voice, which is a fair test only for corpora that checkpoint never heard;
  a late-fusion student is calibrated on validation (distill.calibrate) and scored on every
  clip of the corpus left out: voice accuracy and UAR, and the class-paired pairs of those
  voices with the test faces (face alone, voice alone, fused: fusion must not make the better
  modality worse); the teacher, whose shared fusion head the voice-only stage retrains, is
  scored on the voice alone; a voice that adapts to its deployment (voice_norm "deployment")
  is standardised by the statistics of the held-out corpus's own clips, as a device that
  heard them (distill.evaluate.predict_set);
- RAVDESS statements: RAVDESS's 24 actors say only two sentences; the voice trains with
  RAVDESS's statement 01 only (other corpora as usual) and is scored on RAVDESS's test actors
  per statement: a model that keyed on the words would fall on statement 02.

A late-fusion student's voice is calibrated on its validation corpora, and on speech from
elsewhere it is surer than it is right. The protocol also fits the voice's temperature for
speech it never heard, on the held-out corpora (the clips' uncalibrated voice logits): each
fold is calibrated and scored again with the temperature fitted on the other folds' held-out
corpora (never its own), and the temperature fitted on every held-out corpus is written to
OUT/voice-temperature.json, which `--stage calibrate --voice-temperature-from OUT` gives the
shipped model.

Each fold runs in OUT/<fold>/ (resumable with --resume); the results are written to
OUT/crosscorpus.json and OUT/crosscorpus.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache, partial
from pathlib import Path

import numpy as np
import torch

from distill.cache import Decoded, decode_audio
from distill.calibrate import (
    VOICE_TEMPERATURE_FILE,
    branch_logits,
    calibrate_model,
    fit_temperature,
)
from distill.checkpoint import load_checkpoint
from distill.config import TrainConfig
from distill.corpora import RAVDESS_NAME, Sample, load_speech
from distill.data import load_faces
from distill.distributed import Cluster
from distill.evaluate import TorchPredictor, evaluate
from distill.fit import fit
from distill.models import EmotionModel, LateFusionHead, audio_config
from distill.pack import is_pack
from distill.pairing import EvalSet, audio_sets, build_eval_sets
from distill.pretrain import audio_stage
from distill.provenance import environment
from edge.core.errors import DataError, UsageError
from edge.vision.face import FaceConfig

log = logging.getLogger(__name__)

FUSION_TOLERANCE = 1.0  # points: fused may trail the better single modality by at most this
LEFT_OUT = "without-"  # the name of a fold that leaves one corpus out: without-<corpus>


@dataclass(frozen=True)
class Fold:
    """One training run of the protocol: which samples train (by their own train/val
    splits) and, by name, which groups of samples are scored (all their clips)."""

    name: str
    trains: Callable[[Sample], bool]
    tests: dict[str, Callable[[Sample], bool]]


def ravdess_statement(sample: Sample) -> str:
    """'01' or '02': the sentence a RAVDESS clip says ('' for another corpus)."""
    match = RAVDESS_NAME.match(sample.path.stem) if sample.path is not None else None
    return match.group(5) if sample.corpus == "ravdess" and match else ""


def folds(samples: list[Sample]) -> list[Fold]:
    """Leave-one-corpus-out for each corpus (with at least two), then the RAVDESS statements."""
    corpora = sorted({s.corpus for s in samples})
    if len(corpora) < 2:
        raise DataError(
            f"the cross-corpus protocol needs two speech corpora or more (got {corpora})"
        )
    out = [
        Fold(
            f"{LEFT_OUT}{corpus}",
            lambda s, c=corpus: s.corpus != c,
            {corpus: lambda s, c=corpus: s.corpus == c},
        )
        for corpus in corpora
    ]
    if "ravdess" in corpora:
        out.append(
            Fold(
                "ravdess-statement-01",
                lambda s: s.corpus != "ravdess" or ravdess_statement(s) == "01",
                {
                    f"ravdess test, statement {n}": lambda s, n=n: (
                        ravdess_statement(s) == n and s.split == "test"
                    )
                    for n in ("01", "02")
                },
            )
        )
    return out


def fold_scores(metrics: dict[str, dict]) -> dict:
    """The protocol's numbers of one scored group: voice accuracy/UAR, and on the pairs the
    face alone, the voice alone and fused, with the fusion criterion; where the faces have FER+
    votes, the same for the pairs drawn by their majority (`ferplus_pairs`)."""
    result: dict = {
        "clips": metrics["audio_only"]["n"],
        "voice_accuracy": metrics["audio_only"]["accuracy"],
        "voice_uar": metrics["audio_only"]["uar"],
        "voice_ece": metrics["audio_only"]["ece"],
    }
    if "fused" in metrics:
        face, voice, fused, ok = pair_scores(metrics, "fused")
        result.update(
            pairs=metrics["fused"]["n"],
            pairs_face=face,
            pairs_voice=voice,
            pairs_fused=fused,
            fusion_ok=ok,
        )
    if "fused_ferplus" in metrics:
        face, voice, fused, ok = pair_scores(metrics, "fused_ferplus")
        result["ferplus_pairs"] = {"face": face, "voice": voice, "fused": fused, "fusion_ok": ok}
    return result


def pair_scores(metrics: dict[str, dict], name: str) -> tuple[float, float, float, bool]:
    """Accuracy of the pairs `name` with the voice masked, the face masked and fused, and
    whether fused is within FUSION_TOLERANCE of the better of the two."""
    face = metrics[f"{name}_audio_missing"]["accuracy"]
    voice = metrics[f"{name}_face_missing"]["accuracy"]
    fused = metrics[name]["accuracy"]
    return face, voice, fused, bool(fused >= max(face, voice) - FUSION_TOLERANCE)


@dataclass
class TrainedFold:
    """A fold's trained model and what scoring it (again) needs."""

    fold: Fold
    model: EmotionModel
    late: bool  # a late-fusion student: calibrated and scored on the pairs too
    val_sets: list[EvalSet]  # its validation sets (a late-fusion student's; else empty)
    states: dict[bytes, np.ndarray] = field(default_factory=dict)  # TorchPredictor's
    # for each corpus it never trained on: the voice's uncalibrated logits and the labels
    heldout: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def train_fold(
    cfg: TrainConfig, fold: Fold, samples: list[Sample], faces: Callable[[str], Decoded]
) -> TrainedFold:
    """Train (or resume) one fold; `faces(split)` gives the faces the pairs are built from
    (read only for a late-fusion model)."""
    fold_cfg = replace(cfg, stage="audio", out=str(Path(cfg.out) / fold.name))
    trained = [s for s in samples if fold.trains(s)]
    fit(fold_cfg, Cluster(), partial(audio_stage, speech=trained))
    model, _ = load_checkpoint(Path(fold_cfg.out) / "best.pt")
    # a late-fusion student is calibrated and scored on the pairs too; a model whose fusion
    # head the voice-only stage trained (the teacher's) on the voice alone
    late = isinstance(model.head, LateFusionHead)
    val_sets = []
    if late:
        audio_cfg = audio_config(model)
        val_voices = decode_audio(trained, audio_cfg, cfg.cache_path).select("val")
        val_sets = build_eval_sets(faces("val"), val_voices, audio_cfg)
    return TrainedFold(fold, model, late, val_sets)


def score_fold(
    cfg: TrainConfig,
    run: TrainedFold,
    samples: list[Sample],
    faces: Callable[[str], Decoded],
    voice_temperature: float | None = None,
) -> dict:
    """Calibrate a late-fusion student on validation (its voice with `voice_temperature`
    where given) and score every group of the fold; the first scoring of a fold that held a
    corpus out keeps the voice's logits on it (`run.heldout`)."""
    face_cfg, audio_cfg = FaceConfig(), audio_config(run.model)
    calibration = None
    if run.late:
        calibration = calibrate_model(
            run.model, run.val_sets, face_cfg, voice_temperature=voice_temperature
        )
    result: dict = {"calibration": calibration, "groups": {}}
    for group, chosen in run.fold.tests.items():
        clips = [replace(s, split="test") for s in samples if chosen(s)]
        if not clips:
            log.warning("%s: no clips for %s; not scored", run.fold.name, group)
            continue
        voices = decode_audio(clips, audio_cfg, cfg.cache_path)
        sets = (
            build_eval_sets(faces("test"), voices, audio_cfg, ferplus_pairs=True)
            if run.late
            else audio_sets(voices, audio_cfg)
        )
        metrics = evaluate(TorchPredictor(run.model, states=run.states), sets, face_cfg)
        result["groups"][group] = fold_scores(metrics)
        if run.late and holds_out(run.fold) and group not in run.heldout:
            voice = next(es for es in sets if es.name == "audio_only")
            logits = branch_logits(run.model, voice, face_cfg, states=run.states)[1]
            run.heldout[group] = (logits, torch.from_numpy(voice.labels).long())
    return result


def holds_out(fold: Fold) -> bool:
    """Whether the fold's groups are whole corpora it never trained on (leave-one-corpus-out)."""
    return fold.name.startswith(LEFT_OUT)


def scored_corpora(fold: Fold, samples: list[Sample]) -> set[str]:
    """The corpora a fold scores clips of."""
    return {s.corpus for s in samples for chosen in fold.tests.values() if chosen(s)}


def unseen_voice_temperature(heldout: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> float:
    """The voice temperature that fits speech it never heard: the one minimising the
    cross-entropy of the held-out corpora's voice logits, every clip weighing the same."""
    logits = torch.cat([x for x, _ in heldout.values()])
    labels = torch.cat([y for _, y in heldout.values()])
    return round(fit_temperature(logits, labels), 4)


def rescore_with_unseen_temperature(
    cfg: TrainConfig,
    runs: list[TrainedFold],
    results: list[dict],
    samples: list[Sample],
    faces: Callable[[str], Decoded],
) -> dict | None:
    """Calibrate and score each fold again with the voice temperature fitted on the held-out
    corpora of the other folds, never one it is scored on (added to its result as
    `unseen_voice_temperature`); returns the temperature fitted on every held-out corpus and
    what it was fitted on (None without held-out logits: no late-fusion student)."""
    heldout = {corpus: x for run in runs for corpus, x in run.heldout.items()}
    if not heldout:
        return None
    for run, result in zip(runs, results, strict=True):
        scored = scored_corpora(run.fold, samples)
        others = {c: x for c, x in heldout.items() if c not in scored}
        if not others:
            continue
        temperature = unseen_voice_temperature(others)
        result["unseen_voice_temperature"] = {
            "temperature": temperature,
            "fitted_on": sorted(others),
            **score_fold(cfg, run, samples, faces, temperature),
        }
        log.info("%s, voice temperature %.3f: %s", run.fold.name, temperature,
                 json.dumps(result["unseen_voice_temperature"]["groups"]))  # fmt: skip
    return {
        "voice_temperature": unseen_voice_temperature(heldout),
        "fitted_on": {corpus: len(labels) for corpus, (_, labels) in heldout.items()},
    }


def table(results: list[dict]) -> str:
    """The protocol's results as a Markdown table, one row per scored group (guard λ: the
    weight the fold's calibration gave the shuffled voices, distill.calibrate)."""
    lines = [
        "| fold | scored on | clips | voice acc % | voice UAR % | pairs: face % | voice % "
        "| fused % | fused ≥ best − 1 | FER+ pairs: face % | fused % | fused ≥ best − 1 "
        "| guard λ |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|",
    ]
    for fold in results:
        guard = (fold.get("calibration") or {}).get("fusion_guard")
        weight = guard["shuffled_voice_weight"] if guard else "–"
        for group, r in fold["groups"].items():
            pairs = (
                f"{r['pairs_face']:.2f} | {r['pairs_voice']:.2f} | {r['pairs_fused']:.2f} | "
                f"{'yes' if r['fusion_ok'] else 'no'}"
                if "pairs" in r
                else "– | – | – | –"
            )
            voted = r.get("ferplus_pairs")
            pairs += (
                f" | {voted['face']:.2f} | {voted['fused']:.2f} | "
                f"{'yes' if voted['fusion_ok'] else 'no'}"
                if voted
                else " | – | – | –"
            )
            lines.append(
                f"| {fold['fold']} | {group} | {r['clips']} | {r['voice_accuracy']:.2f} | "
                f"{r['voice_uar']:.2f} | {pairs} | {weight} |"
            )
    lines += ["", f"Leave-one-corpus-out mean voice UAR: {mean_loco_uar(results):.2f} %"]
    return "\n".join(lines)


def unseen_table(results: list[dict], unseen: dict) -> str:
    """Each fold scored again with the voice temperature fitted on the other folds' held-out
    corpora, beside its validation temperature, as a Markdown table."""
    lines = [
        "With the voice temperature of speech never heard (fitted on the other folds' "
        "held-out corpora):",
        "",
        "| fold | scored on | voice T: validation → unseen | voice ECE %: validation T → "
        "unseen T | pairs: fused % | fused ≥ best − 1 | FER+ pairs: fused % "
        "| fused ≥ best − 1 | guard λ |",
        "|---|---|---|---|---:|---|---:|---|---:|",
    ]
    for fold in results:
        again = fold.get("unseen_voice_temperature")
        if again is None:
            continue
        validation_t = fold["calibration"]["temperatures"][1]
        weight = again["calibration"]["fusion_guard"]["shuffled_voice_weight"]
        for group, r in again["groups"].items():
            before = fold["groups"][group]["voice_ece"]
            voted = r.get("ferplus_pairs")
            ferplus = (
                f"{voted['fused']:.2f} | {'yes' if voted['fusion_ok'] else 'no'}"
                if voted
                else "– | –"
            )
            lines.append(
                f"| {fold['fold']} | {group} | {validation_t:.2f} → {again['temperature']:.2f} "
                f"| {before:.2f} → {r['voice_ece']:.2f} | {r['pairs_fused']:.2f} | "
                f"{'yes' if r['fusion_ok'] else 'no'} | {ferplus} | {weight} |"
            )
    fitted_on = ", ".join(f"{c} ({n} clips)" for c, n in unseen["fitted_on"].items())
    lines += [
        "",
        f"Voice temperature of speech never heard, fitted on every held-out corpus "
        f"({fitted_on}): {unseen['voice_temperature']:.4f} ({VOICE_TEMPERATURE_FILE}; "
        "`--stage calibrate --voice-temperature-from` this folder)",
    ]
    return "\n".join(lines)


def mean_loco_uar(results: list[dict]) -> float:
    """The protocol's headline: the voice UAR on each corpus left out, averaged."""
    return float(
        np.mean(
            [
                r["voice_uar"]
                for fold in results
                if fold["fold"].startswith(LEFT_OUT)
                for r in fold["groups"].values()
            ]
        )
    )


def _faces(cfg: TrainConfig, split: str) -> Decoded:
    return load_faces(Path(cfg.faces), split, cfg.cache_path, cfg.max_eval_faces)


def crosscorpus(cfg: TrainConfig) -> dict:
    """Run every fold of the protocol, then score each again with the voice temperature of
    speech never heard; writes OUT/crosscorpus.json, OUT/crosscorpus.md,
    OUT/voice-temperature.json (a late-fusion student's) and OUT/environment.json (the
    versions that produced them)."""
    if any(is_pack(p) for p in cfg.speech_paths):
        raise UsageError("--stage crosscorpus reads the speech corpus folders, not a data pack")
    samples = load_speech(cfg.speech_paths)
    faces = cache(partial(_faces, cfg))
    runs, results = [], []
    for fold in folds(samples):
        t0 = time.time()
        run = train_fold(cfg, fold, samples, faces)
        result = {"fold": fold.name, **score_fold(cfg, run, samples, faces)}
        result["seconds"] = round(time.time() - t0, 1)
        log.info("%s: %s", fold.name, json.dumps(result["groups"]))
        runs.append(run)
        results.append(result)
    unseen = rescore_with_unseen_temperature(cfg, runs, results, samples, faces)
    out = Path(cfg.out)
    (out / "crosscorpus.json").write_text(json.dumps(results, indent=1))
    (out / "environment.json").write_text(json.dumps(environment(), indent=1))
    text = table(results)
    if unseen is not None:
        (out / VOICE_TEMPERATURE_FILE).write_text(json.dumps(unseen, indent=1))
        text += "\n\n" + unseen_table(results, unseen)
    (out / "crosscorpus.md").write_text(text + "\n")
    return {"best_val_score": mean_loco_uar(results), "history": results}
