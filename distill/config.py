"""The training configuration and its validation (torch-free, so the CLI can build its
arguments on any machine)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from distill.speech_augment import PRESETS
from edge.core.errors import UsageError

ARCHS = ("teacher", "student")
# face / audio: one path pre-trained alone; fused: both, optionally distilled from a teacher;
# calibrate: a late-fusion student's temperatures and fusion; crosscorpus: the voice's protocol
STAGES = ("face", "audio", "fused", "calibrate", "crosscorpus")
VOICE_STAGES = ("audio", "crosscorpus")  # the stages that train the voice alone
# what --audio-encoder-kd's targets are: the encoder states as they are, less each training
# speaker's mean, standardised by each training corpus or over all the training clips
ENCODER_CENTRES = ("none", "speaker", "corpus", "all")
# the pretrained speech encoders --audio-encoder names (distill.speech_encoder.ENCODERS, which
# needs torch; the CLI lists them without it)
AUDIO_ENCODERS = ("resemblyzer", "whisper-base")
DEFAULT_FACES = "../shared/data/fer2013"
# every speech corpus of ../shared/data (see its README): the voice trains on all of them
DEFAULT_SPEECH = ("../shared/data/ravdess", "../shared/data/emodb", "../shared/data/urdu")
# How an adapting voice's statistics are gathered in a score (distill.evaluate.predict_set):
# "corpus", from each speech corpus's distinct voiced windows at once, as a device that heard
# them; "online", as the daemon gathers them: a corpus's windows heard one after another, each
# scored with the statistics of those heard before it; "prior", none heard (the training
# corpora's)
VOICE_STATISTICS = ("corpus", "online", "prior")


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in its checkpoints."""

    arch: str = "student"
    stage: str = "fused"
    faces: str = DEFAULT_FACES
    speech: list[str] = field(default_factory=lambda: list(DEFAULT_SPEECH))
    out: str = "runs/student"
    teacher: str | None = None
    init: str | None = None
    init_audio: str | None = None
    reset_audio: bool = False
    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    ema: float = 0.0
    label_smoothing: float = 0.1
    class_balance: float = 0.0
    face_augment: float = 1.0
    freeze_face: bool = False
    freeze_audio: bool = False
    p_face_only: float = 0.2
    p_audio_only: float = 0.2
    kd_temperature: float = 4.0
    kd_alpha: float = 0.7
    kd_face_only: bool = True
    max_train_faces: int = 0
    audio_repeats: int = 8
    speech_augment: str = "full"
    audio_mixstyle: float = 0.0
    audio_encoder_kd: float = 0.0
    audio_encoder: str = "resemblyzer"
    audio_encoder_centre: str = "none"
    audio_adversary: float = 0.0
    audio_bank: int = 8
    max_eval_faces: int = 0
    voice_temperature_from: str | None = None
    threads: int = 0
    workers: int = 1
    seed: int = 0
    resume: bool = False
    cache_dir: str | None = None
    model_config: dict = field(default_factory=dict)

    @property
    def speech_paths(self) -> list[Path]:
        """The speech corpora as paths (`speech` may be one path, as in older checkpoints)."""
        return [Path(p) for p in ([self.speech] if isinstance(self.speech, str) else self.speech)]

    @property
    def cache_path(self) -> Path | None:
        """The decoded-corpus cache folder (None: the default, ~/.cache/emoedge)."""
        return Path(self.cache_dir) if self.cache_dir else None

    def validate(self) -> None:
        """Raise a UsageError naming the option when a setting is out of range or settings
        contradict each other (files are checked when they are read)."""
        if self.arch not in ARCHS:
            raise UsageError(f"--arch {self.arch!r}: allowed values are {', '.join(ARCHS)}")
        self._validate_model_config()
        if self.stage not in STAGES:
            raise UsageError(f"--stage {self.stage!r}: allowed values are {', '.join(STAGES)}")
        if self.stage == "calibrate" and not self.init:
            raise UsageError("--stage calibrate needs --init (a late-fusion student checkpoint)")
        if self.voice_temperature_from and self.stage != "calibrate":
            raise UsageError("--voice-temperature-from: --stage calibrate uses it")
        if self.init_audio and not self.init:
            raise UsageError("--init-audio needs --init (the checkpoint for everything else)")
        if not 0.0 <= self.ema < 1.0:
            raise UsageError(f"--ema {self.ema}: a decay in [0, 1) expected (0: no average)")
        if not 0.0 <= self.audio_mixstyle <= 1.0:
            raise UsageError(f"--audio-mixstyle {self.audio_mixstyle}: a probability expected")
        if self.audio_mixstyle and self.arch != "student":
            raise UsageError("--audio-mixstyle: only the student's voice (a conv net) mixes styles")
        weights = {
            "--audio-encoder-kd": self.audio_encoder_kd,
            "--audio-adversary": self.audio_adversary,
        }
        for option, weight in weights.items():
            if weight < 0:
                raise UsageError(f"{option} {weight}: a weight >= 0 expected")
        for option, value in {"--audio-mixstyle": self.audio_mixstyle, **weights}.items():
            if value and self.stage not in VOICE_STAGES:
                raise UsageError(
                    f"{option}: the voice's own stages ({', '.join(VOICE_STAGES)}) use it"
                )
        if self.audio_encoder_centre not in ENCODER_CENTRES:
            raise UsageError(
                f"--audio-encoder-centre {self.audio_encoder_centre!r}: "
                f"{', '.join(ENCODER_CENTRES)} expected"
            )
        from distill.speech_encoder import speech_encoder

        speech_encoder(self.audio_encoder)  # a UsageError naming the choices
        if self.audio_encoder_centre != "none" and not self.audio_encoder_kd:
            raise UsageError("--audio-encoder-centre needs --audio-encoder-kd (a weight > 0)")
        if self.speech_augment not in PRESETS:
            raise UsageError(
                f"speech_augment {self.speech_augment!r}: allowed values are {', '.join(PRESETS)}"
            )

    def _validate_model_config(self) -> None:
        from distill.models import ARCHITECTURES  # torch: only when a run starts

        allowed = {f.name for f in fields(ARCHITECTURES[self.arch][1])}
        unknown = sorted(set(self.model_config) - allowed)
        if unknown:
            raise UsageError(
                f"--model-config: unknown {self.arch} setting(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
