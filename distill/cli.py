"""`emoedge distill` and `emoedge evaluate`. Torch is imported only when a command runs."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from edge.cli import Command
from edge.core.errors import UsageError

if TYPE_CHECKING:
    from distill.config import TrainConfig

# with --recipe, the options of the command line that override every stage's
OVERRIDES = ("faces", "speech", "cache_dir", "threads", "workers", "seed")
FACES_HELP = (
    "FER2013 folder, Kaggle fer2013.csv, or <root>/<class>/ images (photos are cropped to the "
    "face the device's detector finds); default: "
)
SPEECH_HELP = (
    "speech corpora, one or more: RAVDESS (Actor_XX/...), EmoDB, URDU, or <root>/<class>/ audio "
    "(split by <root>/{train,val,test}/<class>/ to train on it); default: "
)


def _configure_distill(p: argparse.ArgumentParser) -> None:
    from distill.config import (
        ARCHS,
        AUDIO_ENCODERS,
        DEFAULT_FACES,
        DEFAULT_SPEECH,
        ENCODER_CENTRES,
        STAGES,
        TrainConfig,
    )
    from distill.speech_augment import PRESETS

    # every option defaults to None, TrainConfig's default then applies: an option that is not
    # None was given (with --recipe, those override every stage's)
    defaults = TrainConfig()
    _configure_recipe(p)
    p.add_argument("--arch", choices=ARCHS, help=f"default {defaults.arch}")
    p.add_argument(
        "--stage",
        choices=STAGES,
        help="face / audio: pre-train one path on that modality alone; "
        "fused: faces + speech (default); calibrate: fit a late-fusion student's temperatures "
        "and reliability-aware fusion on the validation split; crosscorpus: the voice's "
        "leave-one-corpus-out protocol (an audio stage per held-out corpus, scored on it)",
    )
    p.add_argument(
        "--speech-augment",
        choices=list(PRESETS),
        help="speech augmentation of the audio stage (distill.speech_augment): full (speed, "
        "VTLP, reverberation, band-limiting, coloured noise, gain; default), basic (speed, "
        "gain, white noise) or none",
    )
    p.add_argument(
        "--audio-mixstyle",
        type=float,
        metavar="P",
        help="audio stage, student: mix the per-channel statistics of the voice's early layers "
        "between the clips of a batch (MixStyle) in this share of the batches; default 0 (off)",
    )
    p.add_argument(
        "--audio-encoder-kd",
        type=float,
        metavar="WEIGHT",
        help="audio stage: add this weight × (1 − cosine similarity) between the voice's "
        "pooled features, through a training-only projection, and a pretrained speech "
        "encoder's state of the clip (distill.speech_encoder; --audio-encoder); default 0",
    )
    p.add_argument(
        "--audio-encoder",
        choices=list(AUDIO_ENCODERS),
        help="with --audio-encoder-kd: the pretrained speech encoder, Resemblyzer's speaker "
        "encoder (resemblyzer, default) or the third block of Whisper base's encoder "
        "(whisper-base; use it with --audio-encoder-centre all)",
    )
    p.add_argument(
        "--audio-adversary",
        type=float,
        metavar="WEIGHT",
        help="audio stage: add this weight × the cross-entropy of a training-only classifier "
        "that tells the training corpora apart from the voice's pooled features, its gradient "
        "reversed into the voice (domain-adversarial training); needs two corpora; default 0",
    )
    p.add_argument(
        "--audio-encoder-centre",
        choices=list(ENCODER_CENTRES),
        help="with --audio-encoder-kd: the encoder states as they are (none, default), less "
        "each training speaker's mean state (speaker), so that the voice matches how a clip "
        "differs from its speaker's other clips rather than who speaks, or z-normalised by "
        "each training corpus's mean and deviation (corpus) or over all the training clips (all)",
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
        help=FACES_HELP + DEFAULT_FACES,
    )
    p.add_argument("--speech", nargs="+", help=SPEECH_HELP + " ".join(DEFAULT_SPEECH))
    p.add_argument(
        "--out", help="run folder (default runs/ARCH; with --recipe runs/<recipe file's stem>)"
    )
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
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), help=f"default {value}")
    p.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="validate and save an exponential moving average of the weights (and BatchNorm "
        "statistics) with this decay per step, e.g. 0.998; 0: the weights themselves (default)",
    )
    p.add_argument(
        "--voice-temperature-from",
        metavar="FOLDER",
        help="calibrate: give the voice the temperature of speech it never heard, fitted by "
        "--stage crosscorpus on its held-out corpora (that run's folder or its "
        "voice-temperature.json), instead of the one fitted on the validation corpora",
    )
    p.add_argument("--cache-dir", help="decoded-corpus cache (default ~/.cache/emoedge)")
    p.add_argument(
        "--resume",
        action="store_true",
        default=None,
        help="continue from OUT/last.pt (a --recipe always does)",
    )
    p.add_argument(
        "--reset-audio",
        action="store_true",
        default=None,
        help="start the audio path (branch, attention, voice head) from fresh weights, not "
        "from --init: the voice learns nothing from the speech corpora --init saw",
    )
    p.add_argument(
        "--freeze-face",
        action="store_true",
        default=None,
        help="fused stage: keep the face branch (weights and BatchNorm statistics) fixed",
    )
    p.add_argument(
        "--freeze-audio",
        action="store_true",
        default=None,
        help="fused stage: keep the audio branch (weights and BatchNorm statistics) fixed",
    )
    p.add_argument(
        "--no-kd-face-only",
        dest="kd_face_only",
        action="store_false",
        default=None,
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
    p.add_argument("--faces", default=DEFAULT_FACES, help=FACES_HELP + DEFAULT_FACES)
    p.add_argument("--speech", nargs="+", default=list(DEFAULT_SPEECH), help=SPEECH_HELP)
    p.add_argument(
        "--splits",
        default="train,val,test",
        help="splits to pack, comma-separated (train,val: what training reads)",
    )
    p.add_argument("--part-mb", type=float, default=40.0, help="largest part in MB (default 40)")
    p.add_argument(
        "--no-encoder-states",
        action="store_true",
        help="leave out each clip's states in the speech encoders (by default packed, about "
        "5 kB a clip, so that --audio-encoder-kd trains where no encoder is installed)",
    )
    p.add_argument("--cache-dir", help="decoded-corpus cache (default ~/.cache/emoedge)")


def _run_pack(args: argparse.Namespace) -> int:
    from distill.corpora import SPLITS
    from distill.data import face_corpus, speech_corpus
    from distill.pack import describe, write_pack
    from distill.speech_encoder import ENCODERS, encoder_states
    from edge.audio.frontend import AudioConfig

    splits = [s for s in args.splits.split(",") if s]
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise UsageError(f"--splits {args.splits!r}: a comma-separated list of {', '.join(SPLITS)}")
    if args.part_mb <= 0:
        raise UsageError(f"--part-mb {args.part_mb}: a positive size expected")
    cache = Path(args.cache_dir) if args.cache_dir else None
    audio_cfg = AudioConfig()
    speech = speech_corpus([Path(p) for p in args.speech], audio_cfg, cache)
    manifest = write_pack(
        Path(args.out),
        face_corpus(Path(args.faces), cache),
        speech,
        audio_cfg.sample_rate,
        splits,
        args.part_mb,
        sources={"faces": args.faces, "speech": args.speech},
        encoder_states=None
        if args.no_encoder_states
        else {e: encoder_states(speech.data, audio_cfg.sample_rate, cache, e) for e in ENCODERS},
    )
    print(describe(Path(args.out), manifest))
    return 0


def _configure_recipe(p: argparse.ArgumentParser) -> None:
    recipe = p.add_argument_group(
        "recipe",
        "every stage of a retraining in order, resumable: each stage in OUT/<stage>/, records "
        "in OUT/recipe.json (see distill/recipes/default.toml); with --recipe the command line "
        f"takes only these, --out and {', '.join(f'--{o}'.replace('_', '-') for o in OVERRIDES)}"
        " (which override every stage's)",
    )
    recipe.add_argument("--recipe", type=Path, metavar="FILE", help="the recipe (TOML)")
    recipe.add_argument(
        "--scale",
        type=float,
        metavar="S",
        help="multiply every stage's epochs by S (0 < S <= 1, at least 1 epoch), e.g. 0.05 "
        "for a quick run on a CPU",
    )
    which = recipe.add_mutually_exclusive_group()
    which.add_argument("--from", dest="start", metavar="STAGE", help="rerun STAGE and the rest")
    which.add_argument("--only", metavar="STAGE", help="rerun STAGE alone")


def _given(args: argparse.Namespace) -> dict:
    """The TrainConfig options given on the command line."""
    from distill.config import TrainConfig

    return {f.name: getattr(args, f.name) for f in fields(TrainConfig)
            if getattr(args, f.name, None) is not None}  # fmt: skip


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
        if args.arch not in (None, "student"):  # None: the default, student
            raise UsageError("--fusion applies to the student only")
        config["fusion"] = args.fusion
    return config


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of a one-stage `emoedge distill` command line."""
    from distill.config import TrainConfig

    recipe_only = [f for f, v in (("--scale", args.scale), ("--from", args.start),
                                  ("--only", args.only)) if v is not None]  # fmt: skip
    if recipe_only:
        raise UsageError(f"{', '.join(recipe_only)}: only with --recipe")
    values = _given(args)
    values.setdefault("out", f"runs/{values.get('arch', TrainConfig.arch)}")
    values["model_config"] = _model_config(args)
    return TrainConfig(**values)


def _run_distill(args: argparse.Namespace) -> int:
    if args.action == "pack":
        return _run_pack(args)
    if args.recipe:
        return _run_recipe(args)
    from distill.train import train

    cfg = train_config(args)
    result = train(cfg)
    print(f"best validation score {result['best_val_score']:.2f} → {cfg.out}/best.pt")
    return 0


def _run_recipe(args: argparse.Namespace) -> int:
    from distill.distributed import world_size
    from distill.recipe import load_recipe
    from distill.recipe_run import run_recipe

    given = _given(args) | {k: getattr(args, k) for k in ("fusion", "model_config")}
    # --resume changes nothing: a recipe always resumes where it stopped
    extra = [
        k for k, v in given.items() if v is not None and k not in (*OVERRIDES, "out", "resume")
    ]
    if extra:
        listed = ", ".join(f"--{k}".replace("_", "-") for k in extra)
        raise UsageError(f"{listed} with --recipe: set them in the recipe's stages")
    if world_size() > 1:
        raise UsageError("--recipe runs in one process, not under torchrun")
    out = Path(args.out or f"runs/{args.recipe.stem}")
    overrides = {k: given[k] for k in OVERRIDES if given.get(k) is not None}
    recipe = load_recipe(args.recipe, out, 1.0 if args.scale is None else args.scale, overrides)
    run_recipe(recipe, args.start, args.only)
    return 0


def _configure_evaluate(p: argparse.ArgumentParser) -> None:
    from distill.config import DEFAULT_FACES, DEFAULT_SPEECH, VOICE_STATISTICS

    p.add_argument("model", help="checkpoint (.pt) or exported artifact (folder or manifest.json)")
    p.add_argument("--faces", default=DEFAULT_FACES, help=FACES_HELP + DEFAULT_FACES)
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
    p.add_argument(
        "--device-crop",
        action="store_true",
        help="also score the faces as the device sees them: each put into a larger frame, found "
        "by the device's detector and cropped with the model's framing; reports the framing "
        "the detector's boxes imply",
    )
    p.add_argument(
        "--frame-noise",
        type=float,
        default=0.0,
        metavar="SIGMA",
        help="with --device-crop: add Gaussian noise of SIGMA gray levels to each frame, as a "
        "camera's sensor does (seeded per face; default 0)",
    )
    p.add_argument(
        "--frame-tilt",
        type=float,
        default=0.0,
        metavar="DEGREES",
        help="with --device-crop: tilt each frame's face by DEGREES, as a leaning head (one face "
        "clockwise, the next counter-clockwise; default 0)",
    )
    p.add_argument(
        "--frame-distance",
        type=float,
        default=1.0,
        metavar="TIMES",
        help="with --device-crop: the person TIMES as far from the camera, the face that much "
        "smaller in the frame (1 to 8; default 1: the face half the frame's width)",
    )
    p.add_argument(
        "--reach",
        choices=("short", "full", "auto"),
        help="with --device-crop: the detector's reach (detector.reach; default: the device's "
        "default)",
    )
    p.add_argument(
        "--voice-statistics",
        choices=VOICE_STATISTICS,
        default=VOICE_STATISTICS[0],
        help="for a voice that adapts to the speech it hears: standardise each speech corpus by "
        "the statistics of all its windows (corpus, the default), of the windows heard before "
        "each one as the daemon gathers them (online), or by the training corpora's (prior: "
        "nothing heard yet)",
    )
    p.add_argument("--cache-dir")
    p.add_argument("--json", type=Path, help="also write the metrics here")
    p.add_argument(
        "--png", type=Path, help="also draw the confusion matrices here (one panel per input)"
    )


def _run_evaluate(args: argparse.Namespace) -> int:
    from distill.device_crop import NO_EFFECTS, FrameEffects
    from distill.scoring import score_model, table

    if not args.frame_noise >= 0:
        raise UsageError(f"--frame-noise {args.frame_noise}: gray levels, 0 or more")
    if not 0 <= args.frame_tilt <= 90:
        raise UsageError(f"--frame-tilt {args.frame_tilt}: degrees from 0 to 90")
    if not 1 <= args.frame_distance <= 8:
        raise UsageError(f"--frame-distance {args.frame_distance}: times as far, from 1 to 8")
    frame = FrameEffects(noise=args.frame_noise, tilt=args.frame_tilt, distance=args.frame_distance)
    metrics = score_model(
        args.model,
        Path(args.faces),
        [Path(p) for p in args.speech],
        args.split,
        backend=args.backend,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        av=args.av,
        device_crop=args.device_crop or frame != NO_EFFECTS or args.reach is not None,
        frame=frame,
        reach=args.reach,
        voice_statistics=args.voice_statistics,
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
