"""The interface every runtime backend implements, and the registry that finds them.

Like Frigate's detector plugins: a backend is one small module with an options dataclass
and one inference method; subclassing `Runner` with a name registers it in `BACKENDS`:

    class LiteRtRunner(Runner, name="litert"):
        file_types = (".tflite",)
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import fields
from typing import Any, ClassVar

import numpy as np

from edge.core.errors import ConfigError, EmoedgeError, ModelError
from edge.core.manifest import OUTPUT_ROWS, VOICE_NORM, VOICE_PRIOR_FILE, Manifest
from edge.core.registry import Registry
from edge.core.voice_norm import VoiceNorm

log = logging.getLogger(__name__)

BACKENDS: Registry[type[Runner]] = Registry("backend")


def voice_norm(manifest: Manifest) -> VoiceNorm | None:
    """The running statistics of a model whose voice adapts (None for any other), starting
    from the prior shipped beside it; a window is taken at most once per window length."""
    if not manifest.adapts_voice:
        return None
    path = manifest.directory / VOICE_PRIOR_FILE
    try:
        prior = np.load(path, allow_pickle=False)
        return VoiceNorm(prior, every_s=manifest.audio.window_s)
    except (OSError, ValueError) as error:
        raise ModelError(f"{path}: not a voice prior (2, D) ({error})") from None


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class Runner:
    """A loaded model artifact. Subclasses name themselves in the class statement, set
    file_types, runtimes and Options, and implement `_load` and `_infer`."""

    name: ClassVar[str]
    file_types: ClassVar[tuple[str, ...]]
    runtimes: ClassVar[tuple[str, ...]]  # Python modules that provide the runtime (any one)
    Options: ClassVar[type]

    def __init_subclass__(cls, *, name: str, **kwargs: Any) -> None:
        """Register the backend class in BACKENDS as `name`."""
        super().__init_subclass__(**kwargs)
        cls.name = name
        BACKENDS.register(name)(cls)

    def __init__(self, manifest: Manifest, **options: Any):
        allowed = {f.name for f in fields(self.Options)}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(
                f"backend {self.name}: unknown option(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed)) or '(none)'}"
            )
        self.manifest = manifest
        self.options = self.Options(**options)
        self._input_names = tuple(t.name for t in manifest.inputs[:3])  # face, audio, mask
        # a voice that adapts: the statistics fed as VOICE_NORM, and the last VOICE_STATE
        self.voice_norm = voice_norm(manifest)
        self.voice_state: np.ndarray | None = None
        try:
            self._load()
            self._smoke_test()
        except EmoedgeError:
            raise
        except Exception as error:  # a runtime's own error for a damaged or odd model file
            raise ModelError(
                f"{self.name} cannot load {manifest.model_path}: {type(error).__name__}: {error}"
            ) from None

    @classmethod
    def installed(cls) -> bool:
        """True when one of the modules that provide this runtime can be imported here."""
        return any(importlib.util.find_spec(module) is not None for module in cls.runtimes)

    def _load(self) -> None:
        """Open the model with the runtime (called once from __init__)."""
        raise NotImplementedError

    def _infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model on float32 inputs by name; return its float32 outputs in the
        manifest's order: (B, 3, classes), and (B, D) for a voice that adapts."""
        raise NotImplementedError

    def _smoke_test(self) -> None:
        """One inference on a blank batch-1 input, so a broken model fails at load time."""
        self.logits(*self.blank_inputs(1))

    def blank_inputs(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Zeros of the manifest's input shapes with both modalities marked present."""
        face, audio, mask = (
            np.zeros((batch, *t.shape[1:]), np.float32) for t in self.manifest.inputs[:3]
        )
        mask[:] = 1.0
        return face, audio, mask

    def outputs(self, face: np.ndarray, audio: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Class scores (B, 3, classes) float32 for face (B,1,H,W), audio (B,T,F), mask (B,2):
        rows edge.core.manifest.OUTPUT_ROWS (fused, face alone, voice alone)."""
        arrays = [np.ascontiguousarray(x, dtype=np.float32) for x in (face, audio, mask)]
        batch = len(arrays[0])
        for spec, array in zip(self.manifest.inputs[:3], arrays, strict=True):
            if array.ndim != len(spec.shape) or array.shape[1:] != tuple(spec.shape[1:]):
                raise ModelError(
                    f"input '{spec.name}' has shape {array.shape}; the model "
                    f"{self.manifest.model_id} expects (B, {', '.join(map(str, spec.shape[1:]))})"
                )
            if len(array) != batch:
                raise ModelError(f"inputs differ in batch size: {[len(a) for a in arrays]}")
        feed = dict(zip(self._input_names, arrays, strict=True))
        if self.voice_norm is not None:
            feed[VOICE_NORM] = self.voice_norm.norm
        out = self._infer(feed)
        if self.voice_norm is not None:
            self.voice_state = np.asarray(out[1], dtype=np.float32).reshape(batch, -1)
        return np.asarray(out[0], dtype=np.float32).reshape(batch, len(OUTPUT_ROWS), -1)

    def voice_states(self, audio: np.ndarray) -> np.ndarray:
        """The mean steps (B, D) of an adapting voice for audio windows (B, T, F), each
        computed as the voice alone; ModelError for a model whose voice does not adapt."""
        if self.voice_norm is None:
            raise ModelError(f"the model {self.manifest.model_id} has no voice that adapts")
        face, _, mask = self.blank_inputs(len(audio))
        mask[:, 0] = 0.0
        self.outputs(face, audio, mask)
        assert self.voice_state is not None
        return self.voice_state

    def logits(self, face: np.ndarray, audio: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The model's fused class scores (B, classes): row 'fused' of `outputs`."""
        return self.outputs(face, audio, mask)[:, 0]

    def predict(self, face: np.ndarray, audio: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Class probabilities (B, classes) float32."""
        return softmax(self.logits(face, audio, mask))
