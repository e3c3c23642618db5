"""`emoedge distill --recipe`: a tiny recipe end to end on the tiny corpora (training, test
evaluation, export and bundling through their commands), skipping finished stages, resuming an
interrupted one, refusing a changed one; validation of a bad recipe and of the default one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distill.cli import DISTILL, train_config
from distill.config import TrainConfig
from distill.recipe import load_recipe
from distill.recipe_run import command
from distill.run import Run
from edge.cli import build_parser
from edge.core.errors import ConfigError
from tests.conftest import REPO
from tests.fixtures_export import TINY, run_emoedge
from tests.tiny_corpora import Corpora

DEFAULT = REPO / "distill" / "recipes" / "default.toml"


def toml_value(value: object) -> str:
    """A TOML value of a bool, number, string, list or table (for the test recipes)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def write_recipe(path: Path, stages: list[dict], **top: dict) -> Path:
    lines = [f"seed = {top.pop('seed', 0)}"]
    for table, values in top.items():
        lines += [f"[{table}]", *(f"{k} = {toml_value(v)}" for k, v in values.items())]
    for stage in stages:
        lines += ["[[stages]]", *(f"{k} = {toml_value(v)}" for k, v in stage.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


TINY_DEFAULTS = {"batch_size": 8, "workers": 0, "audio_repeats": 1}
FACE = {"name": "face", "stage": "face", "model_config": TINY["student"], "epochs": 2}
STAGES = [
    FACE,
    {"name": "voice", "stage": "audio", "init": "face", "epochs": 2},
    {"name": "joined", "stage": "calibrate", "init": "face", "init_audio": "voice"},
    {"name": "test", "stage": "evaluate", "model": "joined"},
    {
        "name": "export",
        "stage": "export",
        "checkpoint": "joined",
        "formats": "onnx",
        "int8": True,
        "calib_samples": 12,
        "max_int8_drop": 100.0,  # a tiny model: the gate is not what is tested
        "min_agreement": 0.0,
    },
    {"name": "bundle", "stage": "bundle", "export": "export"},
]


def records(out: Path) -> dict:
    return json.loads((out / "recipe.json").read_text())["stages"]


@pytest.mark.slow
def test_a_recipe_runs_every_stage_then_skips_them_and_refuses_a_changed_one(
    tiny_corpora: Corpora, tmp_path, capsys
) -> None:
    recipe = write_recipe(tmp_path / "tiny.toml", STAGES, seed=3, defaults=TINY_DEFAULTS)
    out = tmp_path / "out"
    args = ["distill", "--recipe", recipe, "--out", out, *tiny_corpora.args(tiny_corpora.speech,
            tiny_corpora.emodb)]  # fmt: skip
    assert run_emoedge(*args, "--scale", "0.5") == 0
    first = records(out)
    assert list(first) == [s["name"] for s in STAGES]
    assert {r["status"] for r in first.values()} == {"done"}
    for r in first.values():
        assert r["seconds"] >= 0 and r["started"] <= r["finished"] and r["device"] == "cpu"
        assert r["torch"] and r["attempts"] == 1 and r["seed"] == 3
        assert r["numpy"] == np.__version__ and r["python"]
    # the scale halves the epochs; the options, the command and the history say so
    face = first["face"]
    assert face["options"]["epochs"] == 1 and face["options"]["faces"] == str(tiny_corpora.faces)
    assert [h["epoch"] for h in face["metrics"]["history"]] == [1]
    assert face["metrics"]["best_val_score"] == face["metrics"]["history"][0]["val_score"]
    voice = first["voice"]
    assert voice["uses"]["init"] == {"stage": "face", "fingerprint": face["fingerprint"]}
    assert f"--init {out / 'face' / 'best.pt'}" in voice["command"]
    assert voice["command"].startswith("emoedge distill --stage audio ")
    # evaluation, export and bundling ran as commands and left their outputs
    assert first["test"]["metrics"]["fused"]["n"] > 0
    assert (out / "test" / "metrics.json").is_file()
    assert first["export"]["metrics"]["rows"]["onnx-int8"]["status"] == "ok"
    assert first["export"]["command"].startswith(f"emoedge export {out / 'joined' / 'best.pt'}")
    assert first["bundle"]["metrics"]["shipped"] == ["onnx-fp32", "onnx-int8"]
    assert (out / "bundle" / "onnx-int8" / "manifest.json").is_file()
    table = capsys.readouterr().out
    assert "| face | face | done |" in table and "| bundle | bundle | done |" in table

    # the same command again: every stage finished, none runs
    assert run_emoedge(*args, "--scale", "0.5") == 0
    assert records(out) == first

    # a changed recipe is refused, naming what changed, until --from reruns it
    capsys.readouterr()
    assert run_emoedge(*args) == 2
    err = capsys.readouterr().err
    assert "'face' changed since it ran: epochs 1 → 2" in err
    assert "'voice' changed since it ran: epochs 1 → 2; warmup_epochs 0.5 → 1.0; init = 'face', " \
        "which changed" in err  # fmt: skip
    assert "'joined' changed since it ran: init = 'face', which changed" in err
    assert "rerun with --from face" in err and "Traceback" not in err
    assert records(out) == first

    # --only reruns one stage, the others stay as they were (threads change no fingerprint)
    assert run_emoedge(*args, "--scale", "0.5", "--only", "face", "--threads", "1") == 0
    again = records(out)
    assert again["face"]["started"] >= first["face"]["finished"]
    assert again["face"]["fingerprint"] == first["face"]["fingerprint"]
    assert {k: v for k, v in again.items() if k != "face"} == {
        k: v for k, v in first.items() if k != "face"
    }


@pytest.mark.slow
def test_an_interrupted_training_stage_resumes_from_its_last_epoch(
    tiny_corpora: Corpora, tmp_path, monkeypatch, capsys
) -> None:
    recipe = write_recipe(tmp_path / "one.toml", [FACE], defaults=TINY_DEFAULTS)
    out = tmp_path / "out"
    args = ["distill", "--recipe", recipe, "--out", out, *tiny_corpora.args()]
    end_epoch = Run.end_epoch

    def interrupted(self: Run, epoch: int, *rest: object) -> None:
        end_epoch(self, epoch, *rest)  # epoch 1 saved in last.pt, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(Run, "end_epoch", interrupted)
    assert run_emoedge(*args) == 130
    (record,) = records(out).values()
    assert record["status"] == "interrupted" and record["finished"]
    history = json.loads((out / "face" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1]

    monkeypatch.undo()
    assert run_emoedge(*args) == 0
    (record,) = records(out).values()
    assert record["status"] == "done" and record["attempts"] == 2
    resumed = record["metrics"]["history"]
    assert [h["epoch"] for h in resumed] == [1, 2] and resumed[0] == history[0]


def test_a_bad_recipe_is_one_error_listing_every_problem(tmp_path, capsys) -> None:
    stages = [
        {"name": "face", "stage": "face", "epoch": 3, "lr": "fast"},
        {"name": "voice", "stage": "audio", "init": "fcae", "teacher": "export"},
        {"name": "voice", "stage": "speech"},
        {"name": "test", "stage": "evaluate", "split": "dev"},
        {"name": "scored", "stage": "evaluate", "model": str(DEFAULT)},  # valid
        {"name": "export", "stage": "export", "checkpoint": "scored"},
        {"name": "calibrated", "stage": "calibrate", "init": "missing/student.pt"},
        {"name": "t", "stage": "calibrate", "init": str(DEFAULT)}
        | {"voice_temperature_from": "scored"},
    ]
    recipe = write_recipe(tmp_path / "bad.toml", stages, defaults={"thread": 1})
    out = tmp_path / "out"
    assert run_emoedge("distill", "--recipe", recipe, "--out", out) == ConfigError.exit_code
    err = capsys.readouterr().err
    expected = [
        "12 problem(s), nothing was run",
        "defaults: unknown option 'thread' (did you mean 'threads'?)",
        "stage 'face': unknown option 'epoch' (did you mean 'epochs'?)",
        "stage 'face': lr = 'fast': a number expected",
        "stage 'voice': init = 'fcae': no such stage (earlier: face)",
        "stage 'voice': teacher = 'export': not an earlier stage",
        "stage 'voice': a second stage of that name",
        "stage 'voice': stage = 'speech'; allowed: face, audio, fused, calibrate, crosscorpus, "
        "evaluate, export, bundle",
        "stage 'test': split = 'dev': allowed values are train, val, test",
        "stage 'test': 'model' is required",
        "stage 'export': checkpoint = 'scored': that stage writes no checkpoint",
        "stage 'calibrated': init = 'missing/student.pt': no such file or folder",
        "stage 't': voice_temperature_from = 'scored': that stage is no crosscorpus stage",
    ]
    for line in expected:
        assert line in err
    assert "Traceback" not in err and not out.exists()


def test_command_line_misuse_is_a_usage_error(tmp_path, capsys) -> None:
    base = ["distill", "--recipe", DEFAULT, "--out", tmp_path / "out"]
    cases = [
        ([*base, "--epochs", "3", "--fusion", "late"], "--epochs, --fusion with --recipe"),
        ([*base, "--scale", "0"], "--scale 0.0: a factor in (0, 1] expected"),
        ([*base, "--only", "teacher"], "--only teacher: no such stage; the stages: teacher-face"),
        (["distill", "--scale", "0.5", "--from", "x"], "--scale, --from: only with --recipe"),
        (["distill", "--recipe", tmp_path / "none.toml"], "cannot read it"),
    ]
    for argv, message in cases:
        assert run_emoedge(*argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_the_default_recipe_validates_in_the_order_of_issue_14(tmp_path) -> None:
    recipe = load_recipe(DEFAULT, tmp_path, overrides={"faces": "my/faces"})
    assert [(s.name, s.kind) for s in recipe.steps] == [
        ("teacher-face", "face"),
        ("teacher-voice", "audio"),
        ("teacher-fused", "fused"),
        ("student-face", "face"),
        ("student-voice", "audio"),
        ("student-calibrate", "calibrate"),
        ("test-teacher", "evaluate"),
        ("crosscorpus", "crosscorpus"),
        ("student-recalibrate", "calibrate"),
        ("test-student", "evaluate"),
        ("export", "export"),
        ("bundle", "bundle"),
        ("student-whisper-voice", "audio"),
        ("crosscorpus-whisper", "crosscorpus"),
        ("student-whisper-calibrate", "calibrate"),
        ("test-student-whisper", "evaluate"),
        ("export-whisper", "export"),
        ("bundle-whisper", "bundle"),
    ]
    step = {s.name: s for s in recipe.steps}
    assert {s.options["arch"] for s in recipe.steps[:3]} == {"teacher"}
    for name in ("student-face", "student-voice"):  # distilled from the fused teacher
        assert step[name].uses["teacher"] == "teacher-fused"
        assert step[name].options["teacher"] == str(tmp_path / "teacher-fused" / "best.pt")
    assert step["teacher-fused"].uses == {"init": "teacher-face", "init_audio": "teacher-voice"}
    assert step["export"].options["int8"] and step["bundle"].uses == {"export": "export"}
    whisper = step["student-whisper-voice"].options
    assert whisper["model_config"]["voice"] == "whisper-base" and whisper["reset_audio"]
    assert whisper["model_config"]["voice_norm"] == "deployment"
    # the voices' temperatures: those of speech never heard, from the cross-corpus protocols
    for calibrated, protocol, exported in (
        ("student-recalibrate", "crosscorpus", "export"),
        ("student-whisper-calibrate", "crosscorpus-whisper", "export-whisper"),
    ):
        assert step[calibrated].uses["voice_temperature_from"] == protocol
        assert step[calibrated].options["voice_temperature_from"] == str(tmp_path / protocol)
        assert step[exported].uses == {"checkpoint": calibrated}
    assert step["bundle-whisper"].options["no_fallback"]
    assert command(step["bundle-whisper"], tmp_path)[3] == "--no-fallback"
    # the committed student's settings (MODEL_CARD.md) and the data override on every stage
    assert step["student-face"].options["model_config"]["fusion"] == "late"
    assert (step["student-face"].options["epochs"], step["student-face"].options["lr"]) == (
        12,
        1e-3,
    )
    assert {s.options["faces"] for s in recipe.steps if "faces" in s.options} == {"my/faces"}

    small = load_recipe(DEFAULT, tmp_path, scale=0.05, overrides={"faces": "my/faces"})
    small = {s.name: s for s in small.steps}
    assert small["teacher-face"].options["epochs"] == 2  # 30 × 0.05 = 1.5
    assert small["student-face"].options["epochs"] == 1  # at least one
    assert small["student-face"].options["warmup_epochs"] == round(0.5 / 12, 4)
    assert small["student-face"].fingerprint != step["student-face"].fingerprint
    # a stage that uses a changed one changes with it
    assert small["student-calibrate"].fingerprint != step["student-calibrate"].fingerprint


def test_each_training_stage_records_the_command_that_trains_the_same(tmp_path) -> None:
    recipe = load_recipe(DEFAULT, tmp_path, scale=0.05, overrides={"cache_dir": "cache"})
    parser = build_parser({"distill": DISTILL})
    for step in filter(lambda s: s.trains, recipe.steps):
        folder = tmp_path / step.name
        program, *argv = command(step, folder)
        expected = TrainConfig(stage=step.kind, out=str(folder), **step.options)
        assert (program, train_config(parser.parse_args(argv))) == ("emoedge", expected)


def test_the_gpu_recipe_is_the_default_recipes_training_stages_with_larger_batches(
    tmp_path,
) -> None:
    gpu = {s.name: s for s in load_recipe(DEFAULT.with_name("gpu.toml"), tmp_path).steps}
    default = {s.name: s for s in load_recipe(DEFAULT, tmp_path).steps}
    assert list(gpu) == list(default)[: len(gpu)] and list(gpu)[-1] == "student-calibrate"
    scaled = {"batch_size", "lr"}  # the only options the GPU recipe may change
    for name, step in gpu.items():
        assert step.kind == default[name].kind and step.uses == default[name].uses
        same = {k: v for k, v in step.options.items() if k not in scaled}
        assert same == {k: v for k, v in default[name].options.items() if k not in scaled}
        if "lr" in step.options:
            assert step.options["batch_size"] > default[name].options["batch_size"]
