"""ONNX Runtime backend: execution providers in order of preference, proved at load."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edge.backends.base import Runner
from edge.core.errors import DeviceError, ModelError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    """providers: preference order, e.g. (TensorRT, CUDA, CPU); threads: 0 = runtime default."""

    providers: tuple[str, ...] = (CPU,)
    threads: int = 0


class OnnxRuntimeRunner(Runner, name="onnxruntime"):
    file_types = (".onnx",)
    runtimes = ("onnxruntime",)
    Options = OnnxRuntimeOptions

    def _load(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise DeviceError(f"onnxruntime is not installed ({error})") from None
        available = set(ort.get_available_providers())
        wanted = [p for p in self.options.providers if p in available]
        missing = [p for p in self.options.providers if p not in available]
        if missing:
            log.warning("onnxruntime: provider(s) %s not available here", ", ".join(missing))
        if CPU not in wanted:
            wanted.append(CPU)
        opts = ort.SessionOptions()
        if self.options.threads:
            opts.intra_op_num_threads = self.options.threads
            opts.inter_op_num_threads = 1
        while True:
            try:
                self._session = ort.InferenceSession(
                    str(self.manifest.model_path), sess_options=opts, providers=wanted
                )
                self._outputs = [t.name for t in self.manifest.outputs]
                super()._smoke_test()
                break
            except Exception as error:  # a provider can fail in many ways at load or first run
                if wanted == [CPU]:
                    raise ModelError(
                        f"onnxruntime cannot run {self.manifest.model_path}: {error}"
                    ) from None
                log.warning("onnxruntime: %s failed (%s); falling back", wanted[0], error)
                wanted = wanted[1:]
        self.providers = tuple(self._session.get_providers())
        log.debug("onnxruntime: %s on %s", self.manifest.model_id, ", ".join(self.providers))

    def _smoke_test(self) -> None:
        """Done per provider in `_load`."""

    def _infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(self._outputs, inputs)
