"""ONNX: torch.onnx.export with a dynamic batch axis; int8 by ONNX Runtime static QDQ."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch.export import Dim

from export.artifact import INPUT_NAMES, OUTPUT_NAME, Converted, Job, Sample, example_inputs

OPSET = 18


def to_onnx(model: torch.nn.Module, path: Path, audio, face) -> Path:
    """Write `model` as checked ONNX. Traced with batch 2 and a batch Dim, so that the
    exporter cannot specialise the batch axis to 1."""
    batch = Dim("batch", min=1, max=4096)
    torch.onnx.export(
        model,
        (),
        str(path),
        kwargs=example_inputs(audio, face, batch=2),
        input_names=list(INPUT_NAMES),
        output_names=[OUTPUT_NAME],
        dynamic_shapes={name: {0: batch} for name in INPUT_NAMES},
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


class _Reader(CalibrationDataReader):
    """onnxruntime.quantization CalibrationDataReader over batch-1 samples."""

    def __init__(self, samples: list[Sample]):
        self._it = iter(samples)

    def get_next(self) -> Sample | None:
        return next(self._it, None)


def fp32_onnx(job: Job) -> Path:
    """The job's fp32 ONNX graph, exported once and shared by the converters that need it."""
    if job.onnx_path is None:
        job.onnx_path = to_onnx(job.model, job.workdir / "fp32.onnx", job.audio, job.face)
    return job.onnx_path


def convert(job: Job, dest: Path, calibration: list[Sample] | None) -> Converted:
    """fp32 ONNX, or (given calibration samples) per-channel int8 QDQ ONNX, in `dest`."""
    name = "model.onnx"
    if calibration is None:
        shutil.copyfile(fp32_onnx(job), dest / name)
        return Converted(name)
    prepared = job.workdir / "prepared.onnx"
    if not prepared.exists():
        quant_pre_process(str(fp32_onnx(job)), str(prepared))
    quantize_static(
        str(prepared),
        str(dest / name),
        _Reader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    return Converted(name)
