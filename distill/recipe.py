"""The recipe of `emoedge distill --recipe FILE`: every stage of a retraining, in order, read with
tomllib, validated as a whole (every problem in one error) and resolved to each stage's options
before anything trains.

    seed = 0                    # every training stage's --seed unless the stage sets its own
    [defaults]                  # options of every stage that takes them
    threads = 0
    [[stages]]
    name = "teacher-face"       # its folder: OUT/teacher-face
    stage = "face"              # a training stage, or evaluate, export, bundle
    arch = "teacher"
    epochs = 30                 # `emoedge distill`'s options, with underscores
    [[stages]]
    name = "teacher-voice"
    stage = "audio"
    init = "teacher-face"       # an earlier stage: its OUT/teacher-face/best.pt

A training stage takes `emoedge distill`'s options (but --out and --resume: the recipe sets
them), `evaluate` those of `emoedge evaluate` (`model`, `split`; the test metrics are written
to its folder), `export` those of `emoedge export` (`checkpoint`, `formats`, `int8`, ...) and
`bundle` the export stage to bundle (`export`; `no_fallback` leaves the fp32 ONNX out).
Options given on the command line (the data, threads, seed) override every stage's; `--scale
S` multiplies every stage's epochs (at least 1, the warm-up keeping its share of the run). A
stage's fingerprint covers its options and those of the stages it uses, so a finished stage
whose recipe changed is not mistaken for done.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import sys
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from distill.config import ARCHS, DEFAULT_FACES, DEFAULT_SPEECH, STAGES, TrainConfig
from distill.speech_augment import PRESETS
from edge.core.errors import ConfigError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TYPES = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "paths": (str, list),
    "table": (dict,),
}
EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "paths": "a path or a list of paths",
    "table": "a table",
}


@dataclass(frozen=True)
class Option:
    """One option a stage takes: its type (a key of TYPES), allowed values, and what an earlier
    stage's name stands for when given one: its checkpoint (OUT/NAME/best.pt) or its folder
    (an export's, or a crosscorpus stage's: "protocol")."""

    type: str
    choices: tuple[str, ...] = ()
    ref: str | None = None  # "checkpoint", "folder" or "protocol" (PRODUCES)
    required: bool = False


def _train_options() -> dict[str, Option]:
    """TrainConfig's fields as options (their types from the annotations), but those the
    recipe sets itself."""
    hints = typing.get_type_hints(TrainConfig)
    kinds = {int: "int", float: "float", bool: "bool", str: "str", list[str]: "paths"}
    options = {}
    for f in fields(TrainConfig):
        if f.name in ("stage", "out", "resume"):
            continue
        hint = hints[f.name]
        kind = "table" if hint is dict else kinds.get(hint, "str")  # str | None: a string
        options[f.name] = Option(kind)
    return options | {
        "arch": Option("str", ARCHS),
        "speech_augment": Option("str", tuple(PRESETS)),
        **{name: Option("str", ref="checkpoint") for name in ("init", "init_audio", "teacher")},
        "voice_temperature_from": Option("str", ref="protocol"),
    }


DATA = {"faces": Option("str"), "speech": Option("paths"), "cache_dir": Option("str")}
SCHEMAS: dict[str, dict[str, Option]] = {
    **dict.fromkeys(STAGES, _train_options()),
    "evaluate": {
        "model": Option("str", ref="checkpoint", required=True),
        "split": Option("str", ("train", "val", "test")),
        **DATA,
    },
    "export": {
        "checkpoint": Option("str", ref="checkpoint", required=True),
        "formats": Option("str"),
        "int8": Option("bool"),
        "calib_samples": Option("int"),
        "max_int8_drop": Option("float"),
        "min_agreement": Option("float"),
        **DATA,
    },
    "bundle": {"export": Option("str", ref="folder", required=True), "no_fallback": Option("bool")},
}
# what each kind of stage leaves for a later one: the checkpoint OUT/NAME/best.pt, or its folder
# (an export; a cross-corpus run, whose voice-temperature.json a calibration reads)
PRODUCES = {**dict.fromkeys(("face", "audio", "fused", "calibrate"), "checkpoint"),
            "export": "folder", "crosscorpus": "protocol"}  # fmt: skip
# options that change how fast a stage runs, not what it computes: outside the fingerprint
RUNTIME_ONLY = ("threads", "workers", "cache_dir")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # a stage's; a value with '/' or '.' is a path


@dataclass(frozen=True)
class Step:
    """One stage of a recipe, resolved."""

    name: str
    kind: str  # a training stage of distill.config.STAGES, or evaluate, export, bundle
    options: dict[str, Any]  # defaults, its own, the overrides; references as paths
    uses: dict[str, str]  # option → the earlier stage it names
    fingerprint: str

    @property
    def trains(self) -> bool:
        return self.kind in STAGES


@dataclass(frozen=True)
class Recipe:
    path: Path
    out: Path
    seed: int
    scale: float
    steps: list[Step]

    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


def load_recipe(
    path: Path, out: Path, scale: float = 1.0, overrides: dict[str, Any] | None = None
) -> Recipe:
    """The recipe at `path`, resolved for the run folder `out`; a ConfigError lists every
    problem of the file (unknown options and stages, types, references, settings)."""
    if not 0 < scale <= 1:
        raise UsageError(f"--scale {scale}: a factor in (0, 1] expected")
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise UsageError(f"--recipe {path}: cannot read it ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    resolver = _Resolver(out, scale, overrides or {})
    steps = resolver.resolve(data)
    if resolver.problems:
        listed = "\n".join(f"  - {p}" for p in resolver.problems)
        count = len(resolver.problems)
        raise ConfigError(f"{path}: {count} problem(s), nothing was run:\n{listed}")
    return Recipe(path, out, resolver.seed, scale, steps)


@dataclass
class _Resolver:
    """Resolves a recipe's stages in order, collecting every problem."""

    out: Path
    scale: float
    overrides: dict[str, Any]
    seed: int = 0
    defaults: dict[str, Any] = field(default_factory=dict)
    names: list[Any] = field(default_factory=list)  # every stage's name, in order
    steps: dict[str, Step] = field(default_factory=dict)  # the valid stages so far
    problems: list[str] = field(default_factory=list)

    def resolve(self, data: dict[str, Any]) -> list[Step]:
        for key in sorted(set(data) - {"seed", "defaults", "stages"}):
            self.problems.append(f"unknown key '{key}' (allowed: seed, defaults, stages)")
        seed = self.overrides.get("seed", data.get("seed", 0))
        if isinstance(seed, bool) or not isinstance(seed, int):
            self.problems.append(f"seed = {seed!r}: an integer expected")
        else:
            self.seed = seed
        self.defaults = self._table(data.get("defaults", {}), "defaults")
        known = {name for schema in SCHEMAS.values() for name in schema}
        for key in self.defaults:
            if key not in known:
                self.problems.append(_unknown("defaults", key, known))
        stages = data.get("stages")
        if not isinstance(stages, list) or not stages:
            self.problems.append("stages: at least one [[stages]] table expected")
            return []
        tables = [self._table(raw, f"stages[{i}]") for i, raw in enumerate(stages)]
        self.names = [t.get("name") for t in tables]
        for index, own in enumerate(tables):
            step = self._stage(index, own)
            if step is not None:
                self.steps[step.name] = step
        return list(self.steps.values())

    def _table(self, value: Any, where: str) -> dict[str, Any]:
        """`value` as a table with option names (dashes read as underscores)."""
        if not isinstance(value, dict):
            self.problems.append(f"{where}: a table expected, got {value!r}")
            return {}
        return {key.replace("-", "_"): v for key, v in value.items()}

    def _stage(self, index: int, own: dict[str, Any]) -> Step | None:
        """Stage `index` resolved, or None after adding its problems."""
        name, kind = own.pop("name", None), own.pop("stage", None)
        where = f"stage '{name}'" if isinstance(name, str) else f"stages[{index}]"
        count = len(self.problems)
        if not isinstance(name, str) or not NAME.fullmatch(name):
            self.problems.append(f"{where}: a name of letters, digits, '-' and '_' expected")
        elif name in self.names[:index]:
            self.problems.append(f"{where}: a second stage of that name")
        if kind not in SCHEMAS:
            self.problems.append(f"{where}: stage = {kind!r}; allowed: {', '.join(SCHEMAS)}")
            return None
        schema = SCHEMAS[kind]
        for key in own:
            if key not in schema:
                self.problems.append(_unknown(where, key, set(schema)))
        options = _base(kind, self.seed) | {k: v for k, v in self.defaults.items() if k in schema}
        options |= {k: v for k, v in own.items() if k in schema}
        options |= {k: v for k, v in self.overrides.items() if k in schema}
        uses: dict[str, str] = {}
        for key, option in schema.items():
            value = options.get(key)
            problem = _check_type(key, value, option)
            if problem:
                self.problems.append(f"{where}: {problem}")
            elif option.type == "paths" and isinstance(value, str):
                options[key] = [value]
            elif (
                option.ref
                and value is not None
                and self._is_stage(where, key, value, option.ref, index)
            ):
                uses[key] = value
                options[key] = str(_output(self.steps[value], self.out))
        if kind in STAGES and len(self.problems) == count:
            if kind != "calibrate":  # the one training stage without epochs
                _scale_epochs(options, self.scale)
            try:
                TrainConfig(stage=kind, **options).validate()
            except UsageError as error:
                self.problems.append(f"{where}: {error}")
        if len(self.problems) > count:
            return None
        return Step(name, kind, options, uses, fingerprint(kind, options, uses, self.steps))

    def _is_stage(self, where: str, key: str, value: str, wanted: str, index: int) -> bool:
        """Whether `value` names a valid earlier stage whose output is what `key` wants (any
        other name is a problem; anything else is a path, which must exist)."""
        if value in self.steps:
            if PRODUCES.get(self.steps[value].kind) == wanted:
                return True
            what = {
                "checkpoint": "writes no checkpoint",
                "folder": "is no export",
                "protocol": "is no crosscorpus stage",
            }[wanted]
            self.problems.append(f"{where}: {key} = '{value}': that stage {what}")
        elif value in self.names[index:]:
            self.problems.append(f"{where}: {key} = '{value}': not an earlier stage")
        elif value in self.names:
            pass  # an earlier stage with problems of its own, listed there
        elif NAME.fullmatch(value):
            names = ", ".join(n for n in self.names[:index] if isinstance(n, str)) or "none"
            self.problems.append(f"{where}: {key} = '{value}': no such stage (earlier: {names})")
        elif not Path(value).exists():
            self.problems.append(f"{where}: {key} = '{value}': no such file or folder")
        return False


def _unknown(where: str, key: str, allowed: set[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"{where}: unknown option '{key}'" + (f" (did you mean '{close[0]}'?)" if close else "")


def _base(kind: str, seed: int) -> dict[str, Any]:
    """A stage's options before the recipe's: TrainConfig's defaults (with the recipe's seed)
    for a training stage, the data of `emoedge evaluate` and `export` for theirs."""
    if kind in STAGES:
        options = asdict(TrainConfig()) | {"seed": seed}
        return {k: v for k, v in options.items() if k in SCHEMAS[kind]}
    if kind == "bundle":
        return {}
    data = {"faces": DEFAULT_FACES, "speech": list(DEFAULT_SPEECH)}
    return data | ({"split": "test"} if kind == "evaluate" else {})


def _check_type(key: str, value: Any, option: Option) -> str | None:
    """The problem with `value` for `option`, or None."""
    if value is None:
        return f"'{key}' is required" if option.required else None
    ok = isinstance(value, TYPES[option.type]) and (
        option.type == "bool" or not isinstance(value, bool)
    )
    if ok and option.type == "paths" and isinstance(value, list):
        ok = bool(value) and all(isinstance(v, str) for v in value)
    if not ok:
        return f"{key} = {value!r}: {EXPECTED[option.type]} expected"
    if option.choices and value not in option.choices:
        return f"{key} = {value!r}: allowed values are {', '.join(option.choices)}"
    return None


def _output(step: Step, out: Path) -> Path:
    """What a later stage's reference to `step` stands for."""
    folder = out / step.name
    return folder / "best.pt" if PRODUCES[step.kind] == "checkpoint" else folder


def _scale_epochs(options: dict[str, Any], scale: float) -> None:
    """epochs × scale (at least 1); the warm-up keeps its share of the run."""
    epochs = max(1, round(options["epochs"] * scale))
    options["warmup_epochs"] = round(
        options["warmup_epochs"] * epochs / max(options["epochs"], 1), 4
    )
    options["epochs"] = epochs


def fingerprint(kind: str, options: dict, uses: dict[str, str], earlier: dict[str, Step]) -> str:
    """A hash of what a stage computes: its kind, its options (a used stage by that stage's
    fingerprint, not its path) but those of RUNTIME_ONLY."""
    what = {k: v for k, v in options.items() if k not in RUNTIME_ONLY}
    what |= {k: earlier[name].fingerprint for k, name in uses.items()}
    text = json.dumps({"stage": kind, **what}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
