"""`python -m export.bundle`: which artifacts of an export ship as a bundled edge model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edge.backends import load_artifact
from export.bundle import main
from tests.fixtures_export import Exported


def _export_copy(exported: Exported, tmp_path: Path, min_agreement: float) -> Path:
    """The tiny export with its report's agreement bound set to `min_agreement`."""
    copy = tmp_path / "export"
    shutil.copytree(exported.out, copy)
    report = json.loads((copy / "report.json").read_text())
    report["gate"]["min_agreement"] = min_agreement
    (copy / "report.json").write_text(json.dumps(report))
    return copy


def test_int8_artifacts_that_pass_the_gate_ship_with_the_fp32_onnx(
    exported_student: Exported, tmp_path: Path, capsys
) -> None:
    dest = tmp_path / "default"
    assert main([str(_export_copy(exported_student, tmp_path, 0.0)), str(dest)]) == 0
    shipped = {p.name for p in dest.iterdir() if p.is_dir()}
    assert shipped == {"onnx-int8", "openvino-int8", "tflite-int8", "onnx-fp32"}
    for name in shipped:
        assert load_artifact(dest / name).manifest.precision in ("int8", "fp32")
    assert "onnx-int8: int8, passed the gate" in capsys.readouterr().out
    assert "## Shipped with the edge package" in (dest / "report.md").read_text()


def test_without_the_fallback_only_the_chosen_artifacts_ship(
    exported_student: Exported, tmp_path: Path
) -> None:
    dest = tmp_path / "default"
    export = str(_export_copy(exported_student, tmp_path, 0.0))
    assert main(["--no-fallback", export, str(dest)]) == 0
    assert {p.name for p in dest.iterdir() if p.is_dir()} == {
        "onnx-int8", "openvino-int8", "tflite-int8"
    }  # fmt: skip


def test_a_format_whose_int8_breaches_the_gate_ships_its_float_artifact(
    exported_student: Exported, tmp_path: Path
) -> None:
    dest = tmp_path / "default"
    (dest / "stale").mkdir(parents=True)
    assert main([str(_export_copy(exported_student, tmp_path, 100.01)), str(dest)]) == 0
    shipped = {p.name for p in dest.iterdir() if p.is_dir()}
    assert shipped == {"onnx-fp32", "openvino-fp16", "tflite-fp32"}
    notes = (dest / "report.md").read_text()
    assert "**openvino-fp16**: float instead: openvino-int8 agrees with PyTorch on" in notes


def test_a_folder_without_an_export_report_is_refused(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path), str(tmp_path / "default")]) == 5
    assert "report.json not found" in capsys.readouterr().err
    assert not (tmp_path / "default").exists()
