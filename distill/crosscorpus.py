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

Each fold runs in OUT/<fold>/ (resumable with --resume); the results are written to
OUT/crosscorpus.json and OUT/crosscorpus.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, partial
from pathlib import Path

import numpy as np

from distill.cache import Decoded, decode_audio
from distill.calibrate import calibrate_model
from distill.checkpoint import load_checkpoint
from distill.config import TrainConfig
from distill.corpora import RAVDESS_NAME, Sample, load_speech
from distill.data import load_faces
from distill.distributed import Cluster
from distill.evaluate import evaluate, torch_predictor
from distill.fit import fit
from distill.models import LateFusionHead, audio_config
from distill.pack import is_pack
from distill.pairing import audio_sets, build_eval_sets
from distill.pretrain import audio_stage
from distill.provenance import environment
from edge.core.errors import DataError, UsageError
from edge.vision.face import FaceConfig

log = logging.getLogger(__name__)

FUSION_TOLERANCE = 1.0  # points: fused may trail the better single modality by at most this


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
            f"without-{corpus}",
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


def run_fold(
    cfg: TrainConfig, fold: Fold, samples: list[Sample], faces: Callable[[str], Decoded]
) -> dict:
    """Train (or resume), calibrate and score one fold; `faces(split)` gives the faces the
    pairs are built from (read only for a late-fusion model); returns its results."""
    face_cfg = FaceConfig()
    fold_cfg = replace(cfg, stage="audio", out=str(Path(cfg.out) / fold.name))
    t0 = time.time()
    trained = [s for s in samples if fold.trains(s)]
    fit(fold_cfg, Cluster(), partial(audio_stage, speech=trained))
    model, _ = load_checkpoint(Path(fold_cfg.out) / "best.pt")
    audio_cfg = audio_config(model)
    # a late-fusion student is calibrated and scored on the pairs too; a model whose fusion
    # head the voice-only stage trained (the teacher's) on the voice alone
    late = isinstance(model.head, LateFusionHead)
    calibration = None
    if late:
        val_voices = decode_audio(trained, audio_cfg, cfg.cache_path).select("val")
        calibration = calibrate_model(
            model, build_eval_sets(faces("val"), val_voices, audio_cfg), face_cfg
        )
    result: dict = {"fold": fold.name, "calibration": calibration, "groups": {}}
    for group, chosen in fold.tests.items():
        clips = [replace(s, split="test") for s in samples if chosen(s)]
        if not clips:
            log.warning("%s: no clips for %s; not scored", fold.name, group)
            continue
        voices = decode_audio(clips, audio_cfg, cfg.cache_path)
        sets = (
            build_eval_sets(faces("test"), voices, audio_cfg, ferplus_pairs=True)
            if late
            else audio_sets(voices, audio_cfg)
        )
        metrics = evaluate(torch_predictor(model), sets, face_cfg)
        result["groups"][group] = fold_scores(metrics)
    result["seconds"] = round(time.time() - t0, 1)
    log.info("%s: %s", fold.name, json.dumps(result["groups"]))
    return result


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


def mean_loco_uar(results: list[dict]) -> float:
    """The protocol's headline: the voice UAR on each corpus left out, averaged."""
    return float(
        np.mean(
            [
                r["voice_uar"]
                for fold in results
                if fold["fold"].startswith("without-")
                for r in fold["groups"].values()
            ]
        )
    )


def _faces(cfg: TrainConfig, split: str) -> Decoded:
    return load_faces(Path(cfg.faces), split, cfg.cache_path, cfg.max_eval_faces)


def crosscorpus(cfg: TrainConfig) -> dict:
    """Run every fold of the protocol; writes OUT/crosscorpus.json, OUT/crosscorpus.md and
    OUT/environment.json (the versions that produced them)."""
    if any(is_pack(p) for p in cfg.speech_paths):
        raise UsageError("--stage crosscorpus reads the speech corpus folders, not a data pack")
    samples = load_speech(cfg.speech_paths)
    faces = cache(partial(_faces, cfg))
    results = [run_fold(cfg, fold, samples, faces) for fold in folds(samples)]
    out = Path(cfg.out)
    (out / "crosscorpus.json").write_text(json.dumps(results, indent=1))
    (out / "environment.json").write_text(json.dumps(environment(), indent=1))
    (out / "crosscorpus.md").write_text(table(results) + "\n")
    return {"best_val_score": mean_loco_uar(results), "history": results}
