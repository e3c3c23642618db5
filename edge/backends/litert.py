"""LiteRT (TFLite) backend: ai_edge_litert, or tflite_runtime where only that is installed.

Exported .tflite models have a fixed batch of 1, so a batch runs sample by sample. int8
models with int8 inputs/outputs are fed and read through their quantisation parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.base import Runner
from edge.core.errors import DeviceError, ModelError


@dataclass(frozen=True)
class LiteRtOptions:
    """threads: 0 = runtime default."""

    threads: int = 0


def _interpreter_class() -> type:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise DeviceError(
                "neither ai-edge-litert nor tflite-runtime is installed; pip install ai-edge-litert"
            ) from None
    return Interpreter


def new_interpreter(model_path: Path, threads: int | None = None) -> Any:
    """A LiteRT interpreter for a .tflite file on `threads` threads (None: the runtime's
    default): DeviceError without a LiteRT runtime, ModelError for a file it cannot load.
    The LiteRT backend and the BlazeFace detector both open their models here."""
    interpreter_cls = _interpreter_class()
    try:
        return interpreter_cls(model_path=str(model_path), num_threads=threads)
    except (ValueError, RuntimeError) as error:
        raise ModelError(f"LiteRT cannot load {model_path}: {error}") from None


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero = detail["quantization"]
    return (x.astype(np.float32) - zero) * scale


class LiteRtRunner(Runner, name="litert"):
    file_types = (".tflite",)
    runtimes = ("ai_edge_litert", "tflite_runtime")
    Options = LiteRtOptions

    def _load(self) -> None:
        if self.voice_norm is not None:
            raise ModelError(
                f"{self.manifest.model_path}: LiteRT does not serve a model whose voice adapts"
            )
        interpreter = new_interpreter(self.manifest.model_path, self.options.threads or None)
        try:
            self._run = interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as error:
            raise ModelError(f"LiteRT cannot load {self.manifest.model_path}: {error}") from None
        self._in = self._run.get_input_details()
        out = self._run.get_output_details()
        missing = set(self._input_names) - set(self._in)
        if missing or len(out) != 1:
            raise ModelError(
                f"{self.manifest.model_path}: signature inputs {sorted(self._in)} / "
                f"{len(out)} output(s) do not match the manifest {list(self._input_names)}"
            )
        self._out_name, self._out = next(iter(out.items()))

    def _infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        batch = len(next(iter(inputs.values())))
        rows = []
        for i in range(batch):
            feed = {k: _quantize(v[i : i + 1], self._in[k]) for k, v in inputs.items()}
            rows.append(_dequantize(self._run(**feed)[self._out_name], self._out))
        return [np.concatenate(rows)]
