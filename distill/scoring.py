"""Score a checkpoint or an exported artifact on a split, and format the result as a table."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from distill.avclips import AVInputs, av_inputs, load_av_clips
from distill.cache import device_detector
from distill.checkpoint import front_end, load_checkpoint
from distill.data import load_data
from distill.device_crop import NO_EFFECTS, FrameEffects, device_crop_sets
from distill.evaluate import Predictor, RunnerPredictor, evaluate, predict_set, torch_predictor
from distill.pairing import build_eval_sets
from edge.audio.frontend import AudioConfig
from edge.core.fusion import top_label
from edge.core.labels import LABELS
from edge.vision.face import FaceConfig

ROWS = (
    ("face_only", "face only"),
    ("face_only_ferplus", "face only, FER+ majority"),
    ("face_only_device_crop", "face only, through the device's crop"),
    ("face_only_ferplus_device_crop", "face only, FER+ majority, through the device's crop"),
    ("audio_only", "audio only"),
    ("fused", "fused (class-paired)"),
    ("fused_audio_missing", "fused pairs, audio masked"),
    ("fused_face_missing", "fused pairs, face masked"),
    ("fused_ferplus", "fused (paired by FER+ majority)"),
    ("fused_ferplus_audio_missing", "FER+ pairs, audio masked"),
    ("fused_ferplus_face_missing", "FER+ pairs, face masked"),
    ("av_fused", "same-person clips, fused"),
    ("av_face", "same-person clips, face"),
    ("av_voice", "same-person clips, voice"),
)


def row_label(key: str) -> str | None:
    """The table label of a metrics key: ROWS', or a per-corpus row ('audio only [emodb]')."""
    base, _, corpus = key.partition("[")
    label = dict(ROWS).get(base)
    return label if label is None or not corpus else f"{label} [{corpus.rstrip(']')}]"


def load_predictor(
    model: str | Path, backend: str | None = None
) -> tuple[Predictor, AudioConfig, FaceConfig, str]:
    """A predictor for a .pt checkpoint (PyTorch) or an exported artifact (edge backend)."""
    path = Path(model)
    if path.suffix == ".pt":
        net, meta = load_checkpoint(path)
        audio_cfg, face_cfg = front_end(meta)
        return torch_predictor(net), audio_cfg, face_cfg, f"pytorch {meta['arch']}"
    from edge.backends import load_artifact

    runner = load_artifact(path, backend)
    return (
        RunnerPredictor(runner),
        runner.manifest.audio,
        runner.manifest.face,
        f"{runner.name} {runner.manifest.precision}",
    )


def score_model(
    model: str | Path,
    faces: Path,
    speech: Path | list[Path],
    split: str = "test",
    backend: str | None = None,
    cache_dir: Path | None = None,
    av: Path | None = None,
    device_crop: bool = False,
    frame: FrameEffects = NO_EFFECTS,
    reach: str | None = None,
    voice_statistics: str = "corpus",
) -> dict:
    """Metrics of a model on the given split: every row of ROWS that the data allows; with
    `av`, also the real same-person clips under that folder (distill.avclips), all of them,
    with each clip's predictions; with `device_crop`, the face rows again through the device's
    detector (its default settings, `reach` if given) and crop (each frame with the camera's
    effects `frame`), and the framing that would reproduce the faces (distill.device_crop). An
    adapting voice's statistics are gathered as `voice_statistics` says
    (distill.evaluate.VOICE_STATISTICS)."""
    predict, audio_cfg, face_cfg, name = load_predictor(model, backend)
    face_data, audio_data = load_data(faces, speech, split, audio_cfg, cache_dir)
    sets = build_eval_sets(face_data, audio_data, audio_cfg, ferplus_pairs=True)
    result = {"model": str(model), "runtime": name, "split": split}
    if getattr(predict, "voice_norm", None) is not None:
        result["voice_statistics"] = voice_statistics
    if device_crop:
        detector = device_detector(reach)
        cropped, implied = device_crop_sets(face_data, audio_cfg, face_cfg, detector, frame)
        sets += cropped
        framing = {"margin": face_cfg.margin, "lift": face_cfg.lift}
        result["device_crop"] = {
            "model_framing": framing,
            "implied_framing": implied,
            "frame": asdict(frame),
            "reach": detector.cfg.reach,
        }
    if av is not None:
        inputs = av_inputs(load_av_clips(av), audio_cfg, face_cfg)
        sets += inputs.sets()
        result["av_clips"] = clip_predictions(predict, inputs, face_cfg)
    metrics = evaluate(predict, sets, face_cfg, voice_statistics=voice_statistics)
    return {**result, "metrics": metrics}


def clip_predictions(predict: Predictor, inputs: AVInputs, face_cfg: FaceConfig) -> list[dict]:
    """Per same-person clip: its class and the label and confidence of face, voice and fused
    (face and fused None where no face was found)."""
    every = np.ones(len(inputs.clips), bool)
    probs = {
        name: predict_set(predict, inputs.masked(name, mask, every), face_cfg)
        for name, mask in (("face", (1.0, 0.0)), ("voice", (0.0, 1.0)), ("fused", (1.0, 1.0)))
    }
    return [
        {
            "clip": clip.name,
            "label": LABELS[clip.label],
            **{
                name: top_label(p[i]) if found or name == "voice" else None
                for name, p in probs.items()
            },
        }
        for i, (clip, found) in enumerate(zip(inputs.clips, inputs.found, strict=True))
    ]


def clip_table(clips: list[dict]) -> str:
    """The same-person clips' predictions as a Markdown table."""

    def cell(p: dict | None) -> str:
        return "no face" if p is None else f"{p['label']} {p['confidence']:.2f}"

    lines = ["| clip | intended | face | voice | fused |", "|---|---|---|---|---|"]
    lines += [
        f"| {c['clip']} | {c['label']} | {cell(c['face'])} | {cell(c['voice'])} | "
        f"{cell(c['fused'])} |"
        for c in clips
    ]
    return "\n".join(lines)


def table(result: dict) -> str:
    """A Markdown table: one row per evaluation set."""
    heading = f"{result['runtime']} · {result['model']} · split {result['split']}"
    if "voice_statistics" in result:
        heading += f" · voice statistics: {result['voice_statistics']}"
    lines = [
        heading,
        "",
        "| input | n | accuracy % | macro-F1 % | UAR % |",
        "|---|---:|---:|---:|---:|",
    ]
    order = {key: i for i, (key, _) in enumerate(ROWS)}
    keys = sorted(result["metrics"], key=lambda k: (order.get(k.partition("[")[0], 99), k))
    for key in keys:
        label, m = row_label(key), result["metrics"][key]
        if label:
            lines.append(
                f"| {label} | {m['n']} | {m['accuracy']:.2f} | {m['macro_f1']:.2f} | "
                f"{m['uar']:.2f} |"
            )
    notes = [
        f"{row_label(k)}: excluded " + ", ".join(f"{n} {why}" for why, n in m["excluded"].items())
        for k, m in result["metrics"].items()
        if m.get("excluded")
    ]
    if result.get("device_crop"):
        crop = result["device_crop"]
        plain = asdict(NO_EFFECTS)
        effects = {k: v for k, v in crop.get("frame", {}).items() if v != plain.get(k)}
        notes.append(
            "device's crop ({} reach{}): the model's framing {}, the detector's boxes imply "
            "{}".format(
                crop.get("reach", "short"),
                f", frames with {effects}" if effects else "",
                crop["model_framing"],
                crop["implied_framing"],
            )
        )
    clips = ["", clip_table(result["av_clips"])] if result.get("av_clips") else []
    return "\n".join(lines + (["", *notes] if notes else []) + clips)
