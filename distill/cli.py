"""`emoedge distill` and `emoedge evaluate`. Torch is imported only when a command runs."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from edge.cli import Command
from edge.core.errors import UsageError

SPEECH_HELP = (
    "speech corpora, one or more: RAVDESS (Actor_XX/...), EmoDB, URDU, or <root>/<class>/ audio "
    "(split by <root>/{train,val,test}/<class>/ to train on it); default: "
)


def _configure_distill(p: argparse.ArgumentParser) -> None:
    from distill.config import ARCHS, DEFAULT_FACES, DEFAULT_SPEECH, STAGES, TrainConfig
    from distill.speech_augment import PRESETS

    defaults = TrainConfig()
    p.add_argument("--arch", choices=ARCHS, default=defaults.arch)
    p.add_argument(
        "--stage",
        choices=STAGES,
        default=defaults.stage,
        help="face / audio: pre-train one path on that modality alone; "
        "fused: faces + speech (default); calibrate: fit a late-fusion student's temperatures "
        "and reliability-aware fusion on the validation split; crosscorpus: the voice's "
        "leave-one-corpus-out protocol (an audio stage per held-out corpus, scored on it)",
    )
    p.add_argument(
        "--speech-augment",
        choices=list(PRESETS),
        default=defaults.speech_augment,
        help="speech augmentation of the audio stage (distill.speech_augment): full (speed, "
        "VTLP, reverberation, band-limiting, coloured noise, gain; default), basic (speed, "
        "gain, white noise) or none",
    )
    p.add_argument(
        "--fusion",
        choices=["concat", "late"],
        help="student fusion head: concat (MLP over both features) or late (gated sum of "
        "per-modality logits); default: the --init checkpoint's, else concat",
    )
    p.add_argument(
        "--model-config",
        metavar="JSON",
        help="architecture settings over the defaults or the --init checkpoint's, e.g. "
        "'{\"face_blocks\": [[64, 2], [64, 1], [128, 2], [128, 1], [192, 2], [192, 1], [192, 1]]}' "
        "(weights of matching name and shape are copied from --init, new residual blocks start "
        "close to the identity)",
    )
    p.add_argument("--init", help="start from this checkpoint's weights (same architecture)")
    p.add_argument(
        "--init-audio",
        help="then take the audio path (audio branch, attention, late-fusion audio head) from "
        "this checkpoint: joins separately pre-trained face and audio paths",
    )
    p.add_argument(
        "--faces",
        default=DEFAULT_FACES,
        help="FER2013 folder, Kaggle fer2013.csv, or <root>/<class>/ images",
    )
    p.add_argument(
        "--speech",
        nargs="+",
        default=list(DEFAULT_SPEECH),
        help=SPEECH_HELP + " ".join(DEFAULT_SPEECH),
    )
    p.add_argument("--out", default=None, help="run folder (default runs/ARCH)")
    p.add_argument("--teacher", help="teacher checkpoint: train the student by distillation")
    for name in (
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "warmup_epochs",
        "label_smoothing",
        "class_balance",
        "face_augment",
        "p_face_only",
        "p_audio_only",
        "kd_temperature",
        "kd_alpha",
        "max_train_faces",
        "audio_repeats",
        "audio_bank",
        "max_eval_faces",
        "threads",
        "workers",
        "seed",
    ):
        value = getattr(defaults, name)
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    p.add_argument(
        "--ema",
        type=float,
        default=defaults.ema,
        metavar="DECAY",
        help="validate and save an exponential moving average of the weights (and BatchNorm "
        "statistics) with this decay per step, e.g. 0.998; 0: the weights themselves (default)",
    )
    p.add_argument("--cache-dir", help="decoded-corpus cache (default ~/.cache/emoedge)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--reset-audio",
        action="store_true",
        help="start the audio path (branch, attention, voice head) from fresh weights, not "
        "from --init: the voice learns nothing from the speech corpora --init saw",
    )
    p.add_argument(
        "--freeze-face",
        action="store_true",
        help="fused stage: keep the face branch (weights and BatchNorm statistics) fixed",
    )
    p.add_argument(
        "--freeze-audio",
        action="store_true",
        help="fused stage: keep the audio branch (weights and BatchNorm statistics) fixed",
    )
    p.add_argument(
        "--no-kd-face-only",
        dest="kd_face_only",
        action="store_false",
        help="distillation: face-only samples learn from their labels, not the teacher",
    )
    _configure_pack(p.add_subparsers(dest="action", metavar="ACTION"))


def _configure_pack(actions: argparse._SubParsersAction) -> None:
    from distill.config import DEFAULT_FACES, DEFAULT_SPEECH

    p = actions.add_parser(
        "pack",
        help="write the decoded corpora as a compact data pack (distill.pack) in parts that "
        "travel one by one; train from it with --faces PACK --speech PACK",
    )
    p.add_argument("--out", default="pack", help="pack folder (default pack/)")
    p.add_argument("--faces", default=DEFAULT_FACES, help="FER2013 folder, CSV or class folder")
    p.add_argument("--speech", nargs="+", default=list(DEFAULT_SPEECH), help=SPEECH_HELP)
    p.add_argument(
        "--splits",
        default="train,val,test",
        help="splits to pack, comma-separated (train,val: what training reads)",
    )
    p.add_argument("--part-mb", type=float, default=40.0, help="largest part in MB (default 40)")
    p.add_argument("--cache-dir", help="decoded-corpus cache (default ~/.cache/emoedge)")


def _run_pack(args: argparse.Namespace) -> int:
    from distill.corpora import SPLITS
    from distill.data import face_corpus, speech_corpus
    from distill.pack import describe, write_pack
    from edge.audio.frontend import AudioConfig

    splits = [s for s in args.splits.split(",") if s]
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise UsageError(f"--splits {args.splits!r}: a comma-separated list of {', '.join(SPLITS)}")
    if args.part_mb <= 0:
        raise UsageError(f"--part-mb {args.part_mb}: a positive size expected")
    cache = Path(args.cache_dir) if args.cache_dir else None
    audio_cfg = AudioConfig()
    manifest = write_pack(
        Path(args.out),
        face_corpus(Path(args.faces), cache),
        speech_corpus([Path(p) for p in args.speech], audio_cfg, cache),
        audio_cfg.sample_rate,
        splits,
        args.part_mb,
        sources={"faces": args.faces, "speech": args.speech},
    )
    print(describe(Path(args.out), manifest))
    return 0


def _model_config(args: argparse.Namespace) -> dict:
    """--model-config (a JSON object of the architecture's config fields) with --fusion; its
    settings are checked with the rest of the configuration (TrainConfig.validate)."""
    try:
        config = json.loads(args.model_config or "{}")
    except json.JSONDecodeError as error:
        raise UsageError(f"--model-config: not JSON ({error})") from None
    if not isinstance(config, dict):
        raise UsageError(f"--model-config: a JSON object expected, got {args.model_config!r}")
    if args.fusion:
        if args.arch != "student":
            raise UsageError("--fusion applies to the student only")
        config["fusion"] = args.fusion
    return config


def _run_distill(args: argparse.Namespace) -> int:
    if args.action == "pack":
        return _run_pack(args)
    from distill.config import TrainConfig
    from distill.train import train

    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    values.setdefault("out", f"runs/{args.arch}")
    values["model_config"] = _model_config(args)
    result = train(TrainConfig(**values))
    print(f"best validation score {result['best_val_score']:.2f} → {values['out']}/best.pt")
    return 0


def _configure_evaluate(p: argparse.ArgumentParser) -> None:
    from distill.config import DEFAULT_FACES, DEFAULT_SPEECH

    p.add_argument("model", help="checkpoint (.pt) or exported artifact (folder or manifest.json)")
    p.add_argument("--faces", default=DEFAULT_FACES)
    p.add_argument(
        "--speech",
        nargs="+",
        default=list(DEFAULT_SPEECH),
        help=SPEECH_HELP + " ".join(DEFAULT_SPEECH),
    )
    p.add_argument(
        "--split",
        default="test",
        choices=["train", "val", "test"],
        help="split of the canonical corpora (a plain class folder is all 'test')",
    )
    p.add_argument("--backend", help="runtime for an artifact (default: from its file type)")
    p.add_argument(
        "--av",
        type=Path,
        metavar="FOLDER",
        help="also score real same-person audio-visual clips (CREMA-D, or RAVDESS video with its "
        "speech) under FOLDER, all of them, with each clip's predictions",
    )
    p.add_argument("--cache-dir")
    p.add_argument("--json", type=Path, help="also write the metrics here")
    p.add_argument(
        "--png", type=Path, help="also draw the confusion matrices here (one panel per input)"
    )


def _run_evaluate(args: argparse.Namespace) -> int:
    from distill.scoring import score_model, table

    metrics = score_model(
        args.model,
        Path(args.faces),
        [Path(p) for p in args.speech],
        args.split,
        backend=args.backend,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        av=args.av,
    )
    print(table(metrics))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(metrics, indent=1))
    if args.png:
        from distill.confusion_plot import plot_confusion

        print(f"confusion matrices → {plot_confusion(metrics, args.png)}")
    return 0


DISTILL = Command(
    help="train the teacher, or distil the student from it, on real data",
    configure=_configure_distill,
    run=_run_distill,
    extra="workstation",
)
EVALUATE = Command(
    help="score a checkpoint or exported artifact: face-only, audio-only, fused",
    configure=_configure_evaluate,
    run=_run_evaluate,
    extra="workstation",
)
