"""The voice's cross-corpus protocol on tiny corpora: one fold per corpus left out plus the
RAVDESS statement fold, each trained, calibrated and scored on what it never saw."""

from __future__ import annotations

import json

import numpy as np
import torch

from distill.checkpoint import load_checkpoint
from distill.corpora import load_speech
from distill.crosscorpus import fold_scores, folds, ravdess_statement, table
from tests.fixtures_export import make_checkpoint, run_emoedge
from tests.tiny_corpora import Corpora, write_emodb, write_ravdess


def test_folds_hold_out_each_corpus_and_one_ravdess_statement(tmp_path) -> None:
    rav = write_ravdess(tmp_path / "rav", actors=(1, 21), sr=16000)
    for clip in list(rav.glob("Actor_21/*")):  # the test actor also says statement 02
        clip.with_name(clip.name.replace("-01-01-01-21", "-01-02-01-21")).write_bytes(
            clip.read_bytes()
        )
    samples = load_speech([rav, write_emodb(tmp_path / "emodb")])
    by_name = {f.name: f for f in folds(samples)}
    assert list(by_name) == ["without-emodb", "without-ravdess", "ravdess-statement-01"]
    held = by_name["without-emodb"]
    assert not any(held.trains(s) for s in samples if s.corpus == "emodb")
    assert all(held.tests["emodb"](s) for s in samples if s.corpus == "emodb")
    statement = by_name["ravdess-statement-01"]
    trained = [s for s in samples if statement.trains(s)]
    assert {ravdess_statement(s) for s in trained if s.corpus == "ravdess"} == {"01"}
    scored = [s for s in samples if statement.tests["ravdess test, statement 02"](s)]
    assert len(scored) == 7 and all(s.split == "test" for s in scored)


def test_the_protocol_trains_a_fresh_voice_per_fold_and_reports_it(
    tiny_corpora: Corpora, tmp_path
) -> None:
    init = make_checkpoint(tmp_path / "init.pt", "student")
    out = tmp_path / "cc"
    code = run_emoedge(
        "distill",
        "--stage",
        "crosscorpus",
        "--init",
        init,
        "--reset-audio",
        *tiny_corpora.args(tiny_corpora.speech, tiny_corpora.emodb, tiny_corpora.urdu),
        "--out",
        out,
        "--epochs",
        "1",
        "--audio-repeats",
        "1",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--threads",
        "1",
    )
    assert code == 0
    results = json.loads((out / "crosscorpus.json").read_text())
    assert [r["fold"] for r in results] == [
        "without-emodb",
        "without-ravdess",
        "without-urdu",
        "ravdess-statement-01",
    ]
    emodb = results[0]["groups"]["emodb"]
    assert emodb["clips"] == 18 and emodb["pairs"] == 180
    assert emodb["fusion_ok"] == (
        emodb["pairs_fused"] >= max(emodb["pairs_face"], emodb["pairs_voice"]) - 1
    )
    assert "Leave-one-corpus-out mean voice UAR" in (out / "crosscorpus.md").read_text()
    guard = results[0]["calibration"]["fusion_guard"]
    assert guard["shuffled_voice_weight"] in (1, 2, 4, 8, 16, 32)
    # each fold again with the voice temperature of the other folds' held-out corpora
    fitted_on = {r["fold"]: r["unseen_voice_temperature"]["fitted_on"] for r in results}
    assert fitted_on == {
        "without-emodb": ["ravdess", "urdu"],
        "without-ravdess": ["emodb", "urdu"],
        "without-urdu": ["emodb", "ravdess"],
        "ravdess-statement-01": ["emodb", "urdu"],  # never the corpus a fold is scored on
    }
    again = results[0]["unseen_voice_temperature"]
    assert again["calibration"]["temperatures"][1] == again["temperature"] > 0
    assert again["groups"]["emodb"]["clips"] == 18 and "fusion_ok" in again["groups"]["emodb"]
    unseen = json.loads((out / "voice-temperature.json").read_text())
    assert unseen["fitted_on"] == {"emodb": 18, "ravdess": 21, "urdu": 12}  # every clip
    assert unseen["voice_temperature"] > 0
    assert "Voice temperature of speech never heard" in (out / "crosscorpus.md").read_text()
    versions = json.loads((out / "environment.json").read_text())
    assert versions["torch"] == torch.__version__ and versions["numpy"] == np.__version__
    assert versions["torch_threads"] == 1  # the same seed trains another voice at two threads
    init_model, _ = load_checkpoint(init)
    fold_model, meta = load_checkpoint(out / "without-emodb" / "best.pt")
    assert meta["train_config"]["reset_audio"]
    for name, weight in fold_model.state_dict().items():  # the voice starts fresh, the face not
        if name.startswith("face."):
            assert torch.equal(weight, init_model.state_dict()[name].half().float()), name


def test_the_teacher_is_scored_on_the_voice_alone(tiny_corpora: Corpora, tmp_path) -> None:
    init = make_checkpoint(tmp_path / "teacher.pt", "teacher")
    out = tmp_path / "cc"
    speech = tiny_corpora.args(tiny_corpora.speech, tiny_corpora.emodb)
    no_faces = tmp_path / "no-faces"  # the voice alone is scored: no face is read
    no_faces.mkdir()
    speech[speech.index("--faces") + 1] = str(no_faces)
    common = ["--epochs", "1", "--audio-repeats", "1", "--batch-size", "8", "--workers", "0"]
    code = run_emoedge(
        "distill", "--arch", "teacher", "--stage", "crosscorpus", "--init", init,
        "--reset-audio", *speech, "--out", out, *common,
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / "crosscorpus.json").read_text())
    emodb = results[0]["groups"]["emodb"]
    assert results[0]["calibration"] is None and "pairs" not in emodb
    assert "unseen_voice_temperature" not in results[0]
    assert not (out / "voice-temperature.json").exists()  # no calibrated voice to fit
    assert emodb["clips"] == 18 and 0 <= emodb["voice_uar"] <= 100
    table_text = (out / "crosscorpus.md").read_text()
    assert "| without-emodb | emodb | 18 |" in table_text and "| – | – |" in table_text


def test_a_fold_scores_the_fusion_criterion_on_the_fer_plus_pairs_too() -> None:
    def acc(value: float) -> dict:
        return {"accuracy": value, "uar": value, "ece": 1.0, "n": 10}

    metrics = {
        "audio_only": acc(30.0),
        **{f"fused{m}": acc(v) for m, v in (("", 61.0), ("_audio_missing", 60.0))},
        "fused_face_missing": acc(30.0),
        **{f"fused_ferplus{m}": acc(v) for m, v in (("", 65.5), ("_audio_missing", 67.0))},
        "fused_ferplus_face_missing": acc(30.0),
    }
    scored = fold_scores(metrics)
    assert scored["fusion_ok"] and scored["pairs_fused"] == 61.0
    voted = {"face": 67.0, "voice": 30.0, "fused": 65.5, "fusion_ok": False}
    assert scored["ferplus_pairs"] == voted
    guard = {"fusion_guard": {"shuffled_voice_weight": 8}}
    fold = {"fold": "without-emodb", "calibration": guard, "groups": {"emodb": scored}}
    assert table([fold]).splitlines()[2].endswith("| yes | 67.00 | 65.50 | no | 8 |")
    single = {k: v for k, v in metrics.items() if "ferplus" not in k}
    assert "ferplus_pairs" not in fold_scores(single)
