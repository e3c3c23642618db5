"""OpenVINO backend: IR (.xml + .bin) or ONNX, f32 inference precision on CPU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.backends.base import Runner
from edge.core.errors import DeviceError, ModelError
from edge.core.settings import setting


@dataclass(frozen=True)
class OpenVinoOptions:
    """The `[backend.openvino]` table (threads come from `model.threads`)."""

    device: str = setting(
        "CPU",
        check=bool,
        rule="an OpenVINO device name",
        help="The OpenVINO device the model runs on: CPU, GPU, NPU, AUTO, ...",
    )
    threads: int = setting(0, low=0, high=64, help="Inference threads; 0 = the runtime's default.")
    precision: str = setting(
        "f32",
        choices=("f32", "f16", "bf16"),
        help="The inference precision on a CPU: f32 stops CPUs with AMX from silently running "
        "bf16 (a different model).",
    )


class OpenVinoRunner(Runner, name="openvino"):
    file_types = (".xml", ".onnx")
    runtimes = ("openvino",)
    Options = OpenVinoOptions

    def _load(self) -> None:
        try:
            import openvino as ov
        except ImportError as error:
            raise DeviceError(f"openvino is not installed ({error})") from None
        config: dict[str, object] = {}
        if self.options.device.upper().startswith("CPU"):
            config["INFERENCE_PRECISION_HINT"] = self.options.precision
            if self.options.threads:
                config["INFERENCE_NUM_THREADS"] = self.options.threads
        try:
            compiled = ov.Core().compile_model(
                str(self.manifest.model_path), self.options.device, config
            )
        except RuntimeError as error:
            raise ModelError(f"openvino cannot load {self.manifest.model_path}: {error}") from None
        self._request = compiled.create_infer_request()

    def _infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        self._request.infer(inputs)
        return [
            self._request.get_output_tensor(i).data.copy()
            for i in range(len(self.manifest.outputs))
        ]
