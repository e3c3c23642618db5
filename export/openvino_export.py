"""OpenVINO IR (FP16-compressed weights) from the ONNX graph; int8 with NNCF."""

from __future__ import annotations

from pathlib import Path

import nncf
import openvino as ov

from export.artifact import Converted, Job, Sample
from export.onnx_export import fp32_onnx


def convert(job: Job, dest: Path, calibration: list[Sample] | None) -> Converted:
    """IR with FP16 weights, or (given calibration samples) NNCF int8, in `dest`."""
    ir = ov.convert_model(str(fp32_onnx(job)))
    if calibration is not None:
        ir = nncf.quantize(ir, nncf.Dataset(calibration), subset_size=len(calibration))
    ov.save_model(ir, str(dest / "model.xml"), compress_to_fp16=True)
    return Converted("model.xml", extra_files=("model.bin",))
