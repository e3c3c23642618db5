"""The export formats by name: one converter module each (export.onnx_export, …), imported
when a format is first used, as they import torch, onnx, openvino or litert at the top; and
the precision of each format's float artifact, known without importing it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.core.errors import UsageError
from edge.core.registry import Registry

if TYPE_CHECKING:
    from export.artifact import Convert

FORMATS: Registry[Convert] = Registry("export format")
FLOAT_PRECISION: dict[str, str] = {}


def _declare(name: str, converter: str, float_precision: str) -> None:
    FORMATS.register_lazy(name, converter)
    FLOAT_PRECISION[name] = float_precision


_declare("onnx", "export.onnx_export:convert", "fp32")
_declare("openvino", "export.openvino_export:convert", "fp16")  # FP16 IR weights, run in f32
_declare("tflite", "export.tflite_export:convert", "fp32")


def parse_formats(text: str) -> tuple[str, ...]:
    """'onnx,tflite' -> ('onnx', 'tflite'), refusing unknown names."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise UsageError(
            f"--formats {text!r}: unknown {', '.join(unknown) or '(empty)'}; "
            f"allowed: {', '.join(FORMATS)}"
        )
    return names
