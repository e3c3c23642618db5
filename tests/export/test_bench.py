"""`emoedge bench` on the exported tiny student (and a tiny teacher checkpoint for reference):
every artifact measured in a fresh process, a table, a JSON file and a bar chart PNG."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fixtures_export import ARTIFACTS, Exported, make_checkpoint, run_emoedge


@pytest.fixture(scope="module")
def bench(exported_student: Exported, tmp_path_factory: pytest.TempPathFactory) -> dict:
    assert exported_student.exit_code == 0
    work = tmp_path_factory.mktemp("bench")
    teacher = make_checkpoint(work / "teacher.pt", "teacher")
    out = work / "bench.json"
    code = run_emoedge(
        "bench",
        exported_student.out,
        "--threads",
        "1",
        "--runs",
        "5",
        "--warmup",
        "1",
        "--teacher",
        teacher,
        "--json",
        out,
        "--out",
        work / "report",
    )
    assert code == 0
    return {**json.loads(out.read_text()), "teacher": teacher, "report": work / "report"}


def pytorch_name(checkpoint: Path) -> str:
    return f"pytorch:{checkpoint.parent.name}/{checkpoint.name}"


def test_every_artifact_and_both_checkpoints_are_measured(
    bench: dict, exported_student: Exported
) -> None:
    measured = {r["target"]: r for r in bench["results"]}
    student, teacher = pytorch_name(exported_student.checkpoint), pytorch_name(bench["teacher"])
    assert set(measured) == {*ARTIFACTS, student, teacher}
    for r in measured.values():
        assert "error" not in r, r
        assert r["threads"] == 1
        assert 0 < r["median_ms"] <= r["p95_ms"]
        assert r["throughput_per_s"] > 0
        assert r["peak_rss_mib"] > 10  # an interpreter with numpy and a runtime
    assert measured["tflite-int8"]["runtime"] == "litert"
    assert measured[teacher]["runtime"] == "pytorch teacher"
    assert measured[student]["runtime"] == "pytorch student"


def test_table_and_chart_are_written_only_where_told(
    exported_student: Exported, bench: dict
) -> None:
    table = (bench["report"] / "bench.md").read_text()
    for name in ARTIFACTS:
        assert f"| {name} |" in table
    assert not list(exported_student.out.glob("bench.*"))  # the measured folder is untouched
    png = (bench["report"] / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_bad_thread_list_is_a_usage_error(
    exported_student: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_emoedge("bench", exported_student.out, "--threads", "1,0") == 2
    assert "expected positive integers" in capsys.readouterr().err


def test_folder_without_artifacts_is_a_model_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_emoedge("bench", tmp_path, "--threads", "1") == 5
    assert "no artifacts" in capsys.readouterr().err


def test_several_folders_are_told_apart(exported_student: Exported, tmp_path: Path) -> None:
    from export.bench import discover

    for folder in ("student", "teacher"):
        shutil.copytree(exported_student.out / "onnx-int8", tmp_path / folder / "onnx-int8")
    names = [t.name for t in discover([tmp_path / "student", tmp_path / "teacher"], None)]
    assert names == ["student/onnx-int8", "teacher/onnx-int8"]
    one = discover([exported_student.out], None)
    assert [t.name for t in one if t.kind == "artifact"] == sorted(ARTIFACTS)
    assert [t.kind for t in one][-1] == "pytorch"  # the checkpoint named in report.json
