"""Runtime backends on real exported artifacts: loading without torch, parity with PyTorch,
the registry, options, provider fallback, the default-model lookup and input checks."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import edge.backends as backends
from edge.backends import (
    BACKENDS,
    BUNDLES,
    backend_for,
    bundled_manifests,
    default_artifact,
    load_artifact,
)
from edge.core.errors import ConfigError, ModelError, UsageError
from edge.core.manifest import BUNDLED_MODELS
from tests.fixtures_export import ARTIFACTS, Exported, run_without_torch

# Largest |logit - PyTorch logit| accepted per precision on the tiny random student.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.15}


def reference_inputs(n: int = 6) -> tuple[np.ndarray, ...]:
    """Fixed inputs covering fused, face-only and audio-only masks."""
    rng = np.random.default_rng(7)
    face = rng.standard_normal((n, 1, 48, 48), dtype=np.float32)
    audio = rng.standard_normal((n, 298, 39), dtype=np.float32)
    mask = np.array([[1, 1], [1, 0], [0, 1]] * (n // 3), np.float32)
    return face, audio, mask


@pytest.fixture(scope="module")
def edge_outputs(exported_student: Exported, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Logits of every artifact, computed in a fresh interpreter that never imports torch."""
    assert exported_student.exit_code == 0
    work = tmp_path_factory.mktemp("edge-run")
    np.savez(work / "inputs.npz", *reference_inputs())
    code = f"""
import json, numpy as np
from edge.backends import load_artifact
x = np.load({str(work / "inputs.npz")!r})
face, audio, mask = x["arr_0"], x["arr_1"], x["arr_2"]
out = {{}}
for name in {list(ARTIFACTS)!r}:
    runner = load_artifact({str(exported_student.out)!r} + "/" + name, threads=1)
    probs = runner.predict(face, audio, mask)
    assert np.allclose(probs.sum(1), 1, atol=1e-5) and probs.dtype == np.float32
    out[name] = [runner.name, runner.manifest.precision, runner.logits(face, audio, mask).tolist()]
json.dump(out, open({str(work / "out.json")!r}, "w"))
"""
    result = run_without_torch(code)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((work / "out.json").read_text())


@pytest.fixture(scope="module")
def torch_outputs(exported_student: Exported) -> np.ndarray:
    import torch

    from distill.checkpoint import load_checkpoint

    model, _ = load_checkpoint(exported_student.checkpoint)
    with torch.no_grad():
        return model(*(torch.from_numpy(x) for x in reference_inputs())).numpy()


@pytest.mark.parametrize("name", ARTIFACTS)
def test_artifact_matches_pytorch_without_torch_loaded(
    name: str, edge_outputs: dict, torch_outputs: np.ndarray
) -> None:
    backend, precision, logits = edge_outputs[name]
    assert (
        backend
        == {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "litert"}[name.split("-")[0]]
    )
    logits = np.array(logits)
    assert logits.shape == (6, 7)
    np.testing.assert_allclose(logits, torch_outputs, atol=TOLERANCE[precision], rtol=0)


def test_onnx_file_runs_on_openvino_by_name(exported_student: Exported) -> None:
    onnx_runner = load_artifact(exported_student.out / "onnx-fp32")
    ov_runner = load_artifact(exported_student.out / "onnx-fp32", "openvino", threads=1)
    assert ov_runner.name == "openvino"
    x = reference_inputs()
    np.testing.assert_allclose(ov_runner.logits(*x), onnx_runner.logits(*x), atol=1e-4)


def test_registry_picks_the_backend_from_the_file_type() -> None:
    assert set(BACKENDS) == {"onnxruntime", "openvino", "litert"}
    assert backend_for("model.onnx").name == "onnxruntime"
    assert backend_for("model.xml").name == "openvino"
    assert backend_for("m/model.tflite").name == "litert"
    with pytest.raises(ModelError, match=r"no backend reads \.pt files"):
        backend_for("model.pt")
    with pytest.raises(
        UsageError, match="unknown backend 'tensorrt'; allowed: litert, onnxruntime, openvino"
    ):
        backend_for("model.onnx", "tensorrt")
    with pytest.raises(UsageError, match=r"backend litert cannot read \.onnx files"):
        backend_for("model.onnx", "litert")


def test_unknown_option_is_refused_with_the_allowed_ones(exported_student: Exported) -> None:
    with pytest.raises(
        ConfigError, match="unknown option\\(s\\) thread; allowed: providers, threads"
    ):
        load_artifact(exported_student.out / "onnx-int8", thread=2)


def test_unavailable_providers_fall_back_to_cpu_with_a_warning(
    exported_student: Exported, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    runner = load_artifact(
        exported_student.out / "onnx-fp32",
        providers=("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    )
    assert runner.providers == ("CPUExecutionProvider",)
    assert "TensorrtExecutionProvider, CUDAExecutionProvider not available" in caplog.text


def test_wrong_input_shape_is_a_clear_error(exported_student: Exported) -> None:
    runner = load_artifact(exported_student.out / "tflite-int8")
    face, audio, mask = reference_inputs()
    with pytest.raises(ModelError, match="input 'audio' has shape \\(6, 100, 39\\)"):
        runner.predict(face, audio[:, :100], mask)
    with pytest.raises(ModelError, match="differ in batch size"):
        runner.predict(face, audio[:3], mask)


def test_tampered_artifact_is_refused_by_every_loader(
    exported_student: Exported, tmp_path: Path
) -> None:
    copy = shutil.copytree(exported_student.out / "tflite-fp32", tmp_path / "tflite-fp32")
    data = bytearray((copy / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"sha256 of model\.tflite"):
        load_artifact(copy)


def test_default_artifact_prefers_int8_and_the_backends_file_type(
    exported_student: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "BUNDLES", tmp_path)
    bundle = tmp_path / "default"
    with pytest.raises(ModelError, match="no bundled default model"):
        default_artifact()
    for name in ("onnx-fp32", "tflite-int8", "openvino-int8"):
        shutil.copytree(exported_student.out / name, bundle / name)
    assert default_artifact() == bundle / "openvino-int8"
    with monkeypatch.context() as without:  # a device without OpenVINO takes the next one
        without.setitem(sys.modules, "openvino", None)
        assert default_artifact() == bundle / "tflite-int8"
    assert default_artifact("litert") == bundle / "tflite-int8"
    assert default_artifact("onnxruntime") == bundle / "onnx-fp32"
    shutil.copytree(exported_student.out / "onnx-int8", bundle / "onnx-int8")
    assert default_artifact() == default_artifact("onnxruntime") == bundle / "onnx-int8"
    # OpenVINO reads the ONNX file too, but its own IR comes first
    assert default_artifact("openvino") == bundle / "openvino-int8"
    assert load_artifact(default_artifact("openvino")).manifest.precision == "int8"


def test_a_bundled_model_is_found_by_its_name(
    exported_student: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "BUNDLES", tmp_path)
    with pytest.raises(ModelError, match="no bundled lite model"):
        default_artifact(bundle="lite")
    shutil.copytree(exported_student.out / "tflite-int8", tmp_path / "lite" / "tflite-int8")
    assert default_artifact(bundle="lite") == tmp_path / "lite" / "tflite-int8"
    # the default bundle without a TFLite artifact points LiteRT at the one that has it
    shutil.copytree(exported_student.out / "onnx-int8", tmp_path / "default" / "onnx-int8")
    with pytest.raises(ModelError, match=r'for backend litert .* or use model\.artifact = "lite"'):
        default_artifact("litert")
    assert default_artifact("openvino") == tmp_path / "default" / "onnx-int8"
    with pytest.raises(UsageError, match="default, lite expected"):
        default_artifact(bundle="large")


@pytest.mark.parametrize("bundle", BUNDLED_MODELS)
def test_each_shipped_model_verifies_passed_its_gate_and_runs(bundle: str) -> None:
    manifests = bundled_manifests(bundle)  # hashes and schema checked
    assert manifests
    for manifest in manifests:
        if manifest.precision == "int8":  # validated on the test split when it was exported
            assert manifest.metrics["agreement"] >= 98.0
        runner = load_artifact(manifest.directory)
        probs = runner.predict(*runner.blank_inputs(2))
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert (
        "int8 gate (max fused drop 1 points, min agreement 98 %): passed"
        in (BUNDLES / bundle / "report.md").read_text()
    )
    if bundle == "default":  # the voice of Whisper base's first blocks, and Whisper's notice
        assert {m.audio.features for m in manifests} == {"whisper-log-mel"}
        notice = BUNDLES.parent / "assets" / "whisper-base" / "LICENSE"
        assert "Copyright (c) 2022 OpenAI" in notice.read_text()
    else:  # the lite model serves every runtime
        assert {backend_for(m.model_file).name for m in manifests} == set(BACKENDS)


def test_litert_runs_a_batch_sample_by_sample(exported_student: Exported) -> None:
    runner = load_artifact(exported_student.out / "tflite-fp32")
    face, audio, mask = runner.blank_inputs(3)
    face[1] += 1.0
    logits = runner.logits(face, audio, mask)
    single = runner.logits(face[1:2], audio[1:2], mask[1:2])
    np.testing.assert_allclose(logits[1:2], single, atol=1e-6)
