"""scripts/gpu_recipe.py end to end on the CPU: a pack of the tiny corpora, a stand-in stage
list, a fake $OUT; stopped by its time budget, then resumed to the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from distill.checkpoint import load_checkpoint
from distill.data import face_corpus, speech_corpus
from distill.pack import write_pack
from edge.audio.frontend import AudioConfig
from tests.conftest import REPO
from tests.fixtures_export import TINY
from tests.tiny_corpora import Corpora

STUDENT = json.dumps({**TINY["student"], "fusion": "late"})
STAGES = f"""# name, then the options of emoedge distill
student-fused --stage fused --epochs 2 --batch-size 8 --threads 1 --model-config '{STUDENT}'
student-calibrate --stage calibrate --init {{run}}/student-fused/best.pt --threads 1
"""


def run_script(tmp_path, out, budget: float) -> tuple[int, dict]:
    argv = [
        sys.executable, "scripts/gpu_recipe.py", "--pack", str(tmp_path / "pack"),
        "--out", str(out), "--run-dir", str(tmp_path / "run"), "--stages",
        str(tmp_path / "stages.txt"), "--workers", "0", "--budget-s", str(budget),
        "--final", "student-fused,student-calibrate",
    ]  # fmt: skip
    env = {**os.environ, "EMOEDGE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_script_trains_from_a_pack_within_its_budget(tiny_corpora: Corpora, tmp_path) -> None:
    faces = face_corpus(tiny_corpora.faces, tiny_corpora.cache)
    speech = speech_corpus([tiny_corpora.speech], AudioConfig(), tiny_corpora.cache)
    write_pack(tmp_path / "pack", faces, speech, 16000, ("train", "val"))
    (tmp_path / "stages.txt").write_text(STAGES)

    # a budget that ends before the first stage can finish: stopped, resumable, OUT written
    code, summary = run_script(tmp_path, tmp_path / "out1", 46)
    assert code == 75 and summary["status"] == 75
    assert [s["name"] for s in summary["stages"]] == ["student-fused"]
    # whether an epoch ended before the stop depends on the machine's speed; the summary must
    # say which checkpoints there are
    fused_best = tmp_path / "run" / "student-fused" / "best.pt"
    assert summary["checkpoints"]["student-calibrate"] == "missing"
    assert (summary["checkpoints"]["student-fused"] == "missing") == (not fused_best.exists())

    out = tmp_path / "out2"
    code, summary = run_script(tmp_path, out, 300)
    assert code == 0, summary
    assert [s["status"] for s in summary["stages"]] == [0, 0]
    assert summary["environment"]["torch"] and summary["environment"]["cuda"] is False
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "records.tar.gz",
        "student-calibrate.best.pt",
        "student-fused.best.pt",
        "summary.json",
    ]
    assert all((out / f).stat().st_size <= 16 * 2**20 for f in files)
    _, meta = load_checkpoint(out / "student-calibrate.best.pt")
    assert meta["train_config"]["faces"] == str(tmp_path / "pack")
    with tarfile.open(out / "records.tar.gz") as tar:
        names = tar.getnames()
    assert "run/gpu_recipe.log" in names
    assert "run/student-fused/history.json" in names
