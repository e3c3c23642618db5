"""OpenVINO IR (FP16-compressed weights) from the ONNX graph; int8 with NNCF."""

from __future__ import annotations

from pathlib import Path

import nncf
import openvino as ov
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
from nncf.quantization.range_estimator import RangeEstimatorParametersSet

from export.artifact import Converted, Job, Sample
from export.onnx_export import fp32_onnx

# NNCF's default activation range is the MEAN over samples of each sample's min and max. On the
# mask path (0 or 1 per sample) that range ends near the fraction of samples with the modality
# present, so a present modality's 1 was clipped to about 0.6 and the audio branch collapsed
# (student: 76.6 % agreement). Global min/max ranges, as ONNX Runtime's calibrator uses, keep 1
# exact (98.6 %); MIXED gives the ReLU6 activations asymmetric ranges.
ACTIVATION_RANGES = AdvancedQuantizationParameters(
    activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
)


def convert(job: Job, dest: Path, calibration: list[Sample] | None) -> Converted:
    """IR with FP16 weights, or (given calibration samples) NNCF int8, in `dest`."""
    # drawn before OpenVINO's converter runs: after it, numpy's OpenBLAS threads, if already
    # started, stall (window features took minutes instead of milliseconds on 2 cores)
    samples = None if calibration is None else list(calibration)
    ir = ov.convert_model(str(fp32_onnx(job)))
    if samples is not None:
        ir = nncf.quantize(
            ir,
            nncf.Dataset(samples),
            subset_size=len(samples),
            preset=nncf.QuantizationPreset.MIXED,
            advanced_parameters=ACTIVATION_RANGES,
        )
    ov.save_model(ir, str(dest / "model.xml"), compress_to_fp16=True)
    return Converted("model.xml", extra_files=("model.bin",))
