"""`emoedge export` on a tiny random student: every format and precision, manifests, report,
calibration from the training split, the int8 gate, and `emoedge evaluate` on an artifact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge.core.errors import GateError, ModelError
from edge.core.manifest import load_manifest, sha256_file
from export.onnx_export import downstream, head_layers, name_nodes
from tests.fixtures_export import ARTIFACTS, TINY, Exported, run_emoedge, run_without_torch
from tests.tiny_corpora import Corpora


@pytest.fixture(scope="module")
def report(exported_student: Exported) -> dict:
    assert exported_student.exit_code == 0
    return json.loads((exported_student.out / "report.json").read_text())


def test_every_format_and_precision_is_exported_and_validated(report: dict) -> None:
    rows = {r["artifact"]: r for r in report["rows"]}
    assert set(rows) == {"pytorch", *ARTIFACTS}
    for name in ARTIFACTS:
        row = rows[name]
        assert row["status"] == "ok", row
        assert row["file_bytes"] > 0 and row["latency_ms"] > 0
        assert 0 <= row["agreement"] <= 100 and row["max_abs_logit_diff"] >= 0
        for key in ("face_only_accuracy", "audio_only_accuracy", "fused_accuracy"):
            assert 0 <= row[key] <= 100
    assert rows["onnx-fp32"]["max_abs_logit_diff"] < 1e-4
    assert rows["onnx-fp32"]["agreement"] == 100.0
    assert all("size_vs_float" in rows[n] for n in ARTIFACTS if n.endswith("int8"))


def test_onnx_and_tflite_artifacts_carry_no_exporter_debug_data(exported_student: Exported) -> None:
    for name in ("onnx-fp32", "onnx-int8"):
        blob = (exported_student.out / name / "model.onnx").read_bytes()
        model = onnx.load_from_string(blob)
        assert not any(node.metadata_props for node in model.graph.node), name
        assert b"stack_trace" not in blob and str(Path.cwd()).encode() not in blob, name
        assert [v.name for v in model.graph.input] == ["face", "audio", "mask"]
    for name in ("tflite-fp32", "tflite-int8"):
        blob = (exported_student.out / name / "model.tflite").read_bytes()
        assert b"distill.models" not in blob and b"serving_default" in blob, name


def test_tflite_int8_keeps_the_voice_convolutions_and_the_late_fusion_head_in_float(
    exported_student: Exported,
) -> None:
    """The face's convolutions are int8; the voice's (every convolution that reads the audio
    input and not the face) are float, and from the branches' log-softmax on (temperatures,
    entropy, gates, the fused sum) no tensor is int8."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(exported_student.out / "tflite-int8" / "model.tflite"))
    graph = model.subgraphs[0]
    ops = list(graph.operators)

    def builtin(op) -> int:
        code = model.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    def int8(op) -> bool:
        tensors = [*op.inputs, *op.outputs]
        return any(graph.tensors[i].type == schema.TensorType.INT8 for i in tensors if i >= 0)

    def reads(name: bytes) -> set[int]:
        """The operators that read the graph input `name`, directly or not."""
        (reached,) = [i for i in graph.inputs if graph.tensors[i].name.endswith(name)]
        reached, found = {reached}, set()
        for k, op in enumerate(ops):  # operators are stored in execution order
            if reached.intersection(op.inputs):
                reached.update(op.outputs)
                found.add(k)
        return found

    convs = {k for k, op in enumerate(ops) if builtin(op) in (
        schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D)}  # fmt: skip
    face, voice = reads(b"face"), reads(b"audio")
    assert (face - voice) & convs and all(int8(ops[k]) for k in (face - voice) & convs)
    assert (voice - face) & convs and not any(int8(ops[k]) for k in (voice - face) & convs)
    head = next(i for i, op in enumerate(ops) if builtin(op) == schema.BuiltinOperator.LOG_SOFTMAX)
    assert not any(int8(op) for op in ops[head:])


def test_onnx_int8_keeps_the_fusion_arithmetic_in_float(exported_student: Exported) -> None:
    """No quantize/dequantize pair downstream of the branches' LogSoftmax."""
    graph = onnx.load(str(exported_student.out / "onnx-int8" / "model.onnx")).graph
    head = [node.op_type for node in downstream(graph, "LogSoftmax")]
    assert "LogSoftmax" in head and not [op for op in head if op.endswith("QuantizeLinear")]
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)


def test_manifests_validate_and_describe_the_artifact(
    exported_student: Exported, report: dict
) -> None:
    for name in ARTIFACTS:
        manifest = load_manifest(exported_student.out / name)
        fmt, precision = name.split("-")
        assert (manifest.format, manifest.precision, manifest.arch) == (fmt, precision, "student")
        assert [t.name for t in manifest.inputs] == ["face", "audio", "mask"]
        assert manifest.inputs[1].shape[1:] == (298, 39)
        assert manifest.outputs[0].shape[1:] == (3, 7)  # fused, face alone, voice alone
        assert manifest.inputs[0].shape[0] == (1 if fmt == "tflite" else "batch")
        assert manifest.source["sha256"] == sha256_file(exported_student.checkpoint)
        row = next(r for r in report["rows"] if r["artifact"] == name)
        assert manifest.metrics["agreement"] == row["agreement"]
        assert manifest.metrics["file_bytes"] == row["file_bytes"]


@pytest.mark.parametrize("name", ["onnx-fp32", "openvino-fp16", "tflite-fp32"])
def test_float_artifacts_give_the_fused_face_and_voice_rows_of_pytorch(
    exported_student: Exported, name: str
) -> None:
    import torch

    from distill.checkpoint import load_checkpoint
    from edge.backends import load_artifact

    model, _ = load_checkpoint(exported_student.checkpoint)
    runner = load_artifact(exported_student.out / name)
    rng = np.random.default_rng(0)
    face = rng.standard_normal((3, 1, 48, 48)).astype(np.float32)
    audio = rng.standard_normal((3, 298, 39)).astype(np.float32)
    mask = np.array([[1, 1], [1, 0], [0, 1]], np.float32)
    rows = runner.outputs(face, audio, mask)
    with torch.no_grad():
        expected = model.all_logits(*map(torch.from_numpy, (face, audio, mask))).numpy()
        masked = {
            m: model(torch.from_numpy(face), torch.from_numpy(audio), torch.tensor([m] * 3))
            for m in ((1.0, 0.0), (0.0, 1.0))
        }
    assert rows.shape == (3, 3, 7)
    np.testing.assert_allclose(rows, expected, atol=2e-3)
    np.testing.assert_allclose(runner.logits(face, audio, mask), expected[:, 0], atol=2e-3)
    # the face row of a sample is what the model says with the voice masked, and vice versa
    np.testing.assert_allclose(expected[0, 1], masked[(1.0, 0.0)][0].numpy(), atol=1e-5)
    np.testing.assert_allclose(expected[0, 2], masked[(0.0, 1.0)][0].numpy(), atol=1e-5)


def test_report_names_the_calibration_split_and_the_gate(
    exported_student: Exported, report: dict
) -> None:
    assert report["calibration"]["split"] == "train"
    assert 0 < report["calibration"]["samples"] <= 12
    assert report["eval"]["split"] == "test"
    assert report["gate"] == {
        "max_int8_drop": 100.0,
        "min_agreement": 0.0,
        "passed": True,
        "breaches": [],
    }
    text = (exported_student.out / "report.md").read_text()
    for name in ("pytorch", *ARTIFACTS):
        assert f"| {name} |" in text
    assert "passed" in text


def test_an_export_validated_on_the_val_split_says_so_and_is_not_bundled(
    tiny_corpora: Corpora,
    student_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--eval-split val scores the validation split's inputs (to choose export settings without
    the test split); the bundle refuses such an export, since the default model's report is the
    test split's."""
    from distill.data import load_data
    from distill.pairing import build_eval_sets
    from edge.audio.frontend import AudioConfig
    from export.bundle import main as bundle_main

    out = tmp_path / "export"
    args = ["--formats", "onnx", "--out", out, "--eval-split", "val", *tiny_corpora.args()]
    assert run_emoedge("export", student_checkpoint, *args) == 0
    report = json.loads((out / "report.json").read_text())
    val_sets = build_eval_sets(
        *load_data(
            tiny_corpora.faces, tiny_corpora.speech, "val", AudioConfig(), tiny_corpora.cache
        ),
        AudioConfig(),
    )
    assert report["eval"]["split"] == "val"
    assert report["eval"]["samples"] == sum(len(s) for s in val_sets)
    assert (out / "report.md").read_text().count("· val split of") == 1
    capsys.readouterr()
    assert bundle_main([str(out), str(tmp_path / "default")]) == ModelError.exit_code
    assert "validated on the val split" in capsys.readouterr().err
    assert not (tmp_path / "default").exists()


def test_calibration_draws_every_mask_from_the_training_split(tiny_corpora: Corpora) -> None:
    from edge.audio.frontend import AudioConfig
    from edge.vision.face import FaceConfig
    from export.int8_samples import calibration_samples

    samples = calibration_samples(
        tiny_corpora.faces, tiny_corpora.speech, AudioConfig(), FaceConfig(), 10, tiny_corpora.cache
    )
    masks = {tuple(s["mask"][0]) for s in samples}
    assert masks == {(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)}
    assert all(
        s["face"].shape == (1, 1, 48, 48) and s["audio"].shape == (1, 298, 39) for s in samples
    )


def test_calibration_samples_are_drawn_on_first_use_once() -> None:
    from export.int8_samples import LazySamples

    draws = []
    samples = LazySamples(lambda: draws.append(1) or [{"face": i} for i in range(3)])
    assert not samples.drawn and not draws
    assert [s["face"] for s in samples] == [0, 1, 2] and len(samples) == 3
    assert samples[1:] == [{"face": 1}, {"face": 2}]
    assert samples.drawn and draws == [1]


@pytest.mark.timeout(300, method="thread")  # a stall would otherwise hold CI to its limit
def test_breached_int8_bound_exits_non_zero(
    tiny_corpora: Corpora,
    student_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """OpenVINO alone: its int8 conversion is the first to ask for calibration samples (drawn
    after OpenVINO's converter had run, their features stalled for minutes)."""
    code = run_emoedge(
        "export",
        student_checkpoint,
        "--formats",
        "openvino",
        "--int8",
        "--calib-samples",
        "6",
        "--out",
        tmp_path,
        "--min-agreement",
        "101",
        *tiny_corpora.args(),
    )
    assert code == GateError.exit_code
    err = capsys.readouterr().err
    assert "int8 quality bound breached: openvino-int8 agrees with PyTorch" in err
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["status"] for r in report["rows"]] == ["ok"] * 3
    assert report["calibration"]["samples"] > 0 and report["gate"]["passed"] is False
    assert "FAILED" in (tmp_path / "report.md").read_text()


def test_a_format_that_does_not_convert_fails_the_export_and_spares_the_others(
    tiny_corpora: Corpora,
    student_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A file where the TFLite artifact's folder must go: that conversion fails for real."""
    (tmp_path / "tflite-fp32").write_text("in the way")
    code = run_emoedge(
        "export", student_checkpoint, "--formats", "onnx,tflite", "--out", tmp_path,
        *tiny_corpora.args(),
    )  # fmt: skip
    assert code == ModelError.exit_code
    err = capsys.readouterr().err
    assert "not converted: tflite-fp32; the other artifacts were written" in err
    assert "Traceback" not in err
    assert (tmp_path / "onnx-fp32" / "manifest.json").is_file()
    rows = {r["artifact"]: r for r in json.loads((tmp_path / "report.json").read_text())["rows"]}
    assert rows["onnx-fp32"]["status"] == "ok" and rows["tflite-fp32"]["status"] == "failed"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--formats", "onnx,coreml"], 2, "unknown coreml; allowed: onnx, openvino, tflite"),
        (["--calib-samples", "0", "--int8"], 4, "--calib-samples must be at least 1"),
    ],
)
def test_bad_options_are_clear_errors(
    tiny_corpora: Corpora,
    student_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    assert (
        run_emoedge("export", student_checkpoint, "--out", tmp_path, *args, *tiny_corpora.args())
        == code
    )
    assert message in capsys.readouterr().err


def test_missing_checkpoint_is_a_model_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_emoedge("export", tmp_path / "nope.pt", "--formats", "onnx") == 5
    assert "checkpoint not found" in capsys.readouterr().err


def test_evaluate_scores_an_exported_artifact(
    exported_student: Exported, tiny_corpora: Corpora, tmp_path: Path
) -> None:
    out = tmp_path / "metrics.json"
    code = run_emoedge(
        "evaluate", exported_student.out / "openvino-int8", "--json", out, *tiny_corpora.args()
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["runtime"] == "openvino int8"
    report = json.loads((exported_student.out / "report.json").read_text())
    row = next(r for r in report["rows"] if r["artifact"] == "openvino-int8")
    assert result["metrics"]["fused"]["accuracy"] == row["fused_accuracy"]
    assert result["metrics"]["face_only"]["accuracy"] == row["face_only_accuracy"]


def test_int8_onnx_keeps_the_face_input_layers_in_float(exported_student: Exported) -> None:
    """The face's stem and first block (the layers at the face's full resolution) keep float
    weights (export.onnx_export.face_input_convs); every other convolution is int8."""
    model = onnx.load(exported_student.out / "onnx-int8" / "model.onnx")
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    in_float = [n for n in convs if n.input[1] in shapes]  # a weight of its own: not int8
    stem, width = TINY["student"]["face_stem"], TINY["student"]["face_blocks"][0][0]
    assert [shapes[n.input[1]] for n in in_float] == [
        [stem, 1, 3, 3],
        [stem, 1, 3, 3],
        [width, stem, 1, 1],
    ]
    assert all(n.input[1] in dequantized for n in convs if n not in in_float)  # the rest int8


def test_head_layers_are_each_branch_heads_output_layer() -> None:
    """head_layers names, for every LogSoftmax, the linear layer its logits come from and the
    temperature's arithmetic between them, and nothing else: not a linear layer that reaches
    a LogSoftmax through anything but elementwise arithmetic, nor one that reaches none."""
    from onnx import TensorProto, helper

    def weight(name: str) -> onnx.TensorProto:
        return helper.make_tensor(name, TensorProto.FLOAT, [4, 4], [0.1] * 16)

    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["face"], name="face_gemm"),
        helper.make_node("Div", ["face", "t"], ["face_t"], name="face_temperature"),
        helper.make_node("LogSoftmax", ["face_t"], ["face_logp"], name="face_logsoftmax"),
        helper.make_node("MatMul", ["x", "w2"], ["voice"], name="voice_matmul"),
        helper.make_node("LogSoftmax", ["voice"], ["voice_logp"], name="voice_logsoftmax"),
        helper.make_node("Gemm", ["x", "w3"], ["hidden"], name="hidden_gemm"),
        helper.make_node("Relu", ["hidden"], ["relu"], name="relu"),
        helper.make_node("LogSoftmax", ["relu"], ["other_logp"], name="other_logsoftmax"),
        helper.make_node("Gemm", ["x", "w4"], ["unused"], name="feature_gemm"),
    ]
    outputs = ["face_logp", "voice_logp", "other_logp", "unused"]
    graph = helper.make_graph(
        nodes,
        "heads",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 4]) for o in outputs],
        [
            weight("w1"),
            weight("w2"),
            weight("w3"),
            weight("w4"),
            helper.make_tensor("t", TensorProto.FLOAT, [], [0.5]),
        ],
    )
    assert sorted(head_layers(graph)) == ["face_gemm", "face_temperature", "voice_matmul"]


def test_the_exported_students_head_layers_are_its_two_branch_heads(
    exported_student: Exported, tmp_path: Path
) -> None:
    """In the exported (uncalibrated) student each branch's LogSoftmax (face, voice) reads its
    Gemm directly, with no temperature arithmetic between them: head_layers is those two Gemms."""
    path = tmp_path / "model.onnx"
    shutil.copyfile(exported_student.out / "onnx-fp32" / "model.onnx", path)
    name_nodes(path)
    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    heads = [producer[n.input[0]] for n in graph.node if n.op_type == "LogSoftmax"]
    assert [node.op_type for node in heads] == ["Gemm", "Gemm"]
    assert sorted(head_layers(graph)) == sorted(node.name for node in heads)


def test_formats_are_chosen_by_name_and_listed_without_importing_a_converter() -> None:
    listed = run_without_torch(
        "from export.formats import FLOAT_PRECISION, FORMATS, parse_formats\n"
        "assert FORMATS.names() == tuple(FLOAT_PRECISION) == ('onnx', 'openvino', 'tflite')\n"
        "assert parse_formats('tflite, ONNX') == ('tflite', 'onnx')\n"
        "import export.bundle\n"
    )
    assert listed.returncode == 0, listed.stderr
    from export.formats import FORMATS

    assert all(callable(FORMATS.get(name)) for name in FORMATS)
