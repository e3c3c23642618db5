"""Runtime backends behind one interface, found through a registry by name or file type.

    runner = load_artifact("edge/models/default/onnx-int8")       # backend from the file type
    runner = load_artifact(path, "openvino", threads=1)            # or by name, with options
    probabilities = runner.predict(face, audio, mask)              # (B, 7) float32

Each backend module imports its runtime only when a model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.backends import litert, onnxruntime, openvino  # noqa: F401  (they register)
from edge.backends.base import BACKENDS, Runner
from edge.core.errors import ModelError, UsageError
from edge.core.manifest import BUNDLED_MODELS, Manifest, load_manifest

__all__ = [
    "BACKENDS",
    "Runner",
    "backend_for",
    "default_artifact",
    "default_manifest",
    "load_artifact",
]

BUNDLES = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODELS = BUNDLES / "default"
# Bundled artifacts, most preferred first: int8 where the runtime has it.
DEFAULT_ORDER = (
    "onnx-int8", "openvino-int8", "openvino-fp16", "tflite-int8", "tflite-fp32", "onnx-fp32"
)  # fmt: skip


def backend_for(model_file: str | Path, backend: str | None = None) -> type[Runner]:
    """The backend class named `backend`, or the first registered one that reads the file type."""
    suffix = Path(model_file).suffix.lower()
    if backend is not None:
        cls = BACKENDS.get(backend)
        if suffix not in cls.file_types:
            raise UsageError(
                f"backend {backend} cannot read {suffix} files; "
                f"it reads {', '.join(cls.file_types)}"
            )
        return cls
    readers = [cls for cls in (BACKENDS.get(n) for n in BACKENDS) if suffix in cls.file_types]
    if readers:  # the backend whose own format this is, e.g. onnxruntime before openvino
        return min(readers, key=lambda cls: cls.file_types.index(suffix))
    raise ModelError(f"no backend reads {suffix} files ({Path(model_file).name})")


def load_artifact(path: str | Path, backend: str | None = None, **options: Any) -> Runner:
    """Load an exported artifact (folder, manifest or model file) after verifying its manifest."""
    manifest = load_manifest(path)
    return backend_for(manifest.model_file, backend)(manifest, **options)


def bundled_manifests(bundle: str) -> list[Manifest]:
    """The verified manifests of a bundled model's artifacts (BUNDLED_MODELS), in DEFAULT_ORDER."""
    folders = [BUNDLES / bundle / name for name in DEFAULT_ORDER]
    return [load_manifest(f) for f in folders if (f / "manifest.json").is_file()]


def default_manifest(backend: str | None = None, bundle: str = "default") -> Manifest:
    """The verified manifest of a bundled model (BUNDLED_MODELS; the default one unless
    named): the first in DEFAULT_ORDER whose runtime is installed here, or with `backend` the
    first in its own file type (OpenVINO's IR before an ONNX file it can also read)."""
    if bundle not in BUNDLED_MODELS:
        raise UsageError(f"bundled model {bundle!r}: {', '.join(BUNDLED_MODELS)} expected")
    cls = None if backend is None else BACKENDS.get(backend)
    found = readable(bundled_manifests(bundle), cls)
    if found:
        return found[0]
    others = [b for b in BUNDLED_MODELS if b != bundle and readable(bundled_manifests(b), cls)]
    raise ModelError(
        f"no bundled {bundle} model{f' for backend {backend}' if backend else ''} under "
        f"{BUNDLES / bundle}; export one (make {bundle}-model), pass a model path"
        + "".join(f' or use model.artifact = "{b}"' for b in others)
    )


def readable(manifests: list[Manifest], cls: type[Runner] | None) -> list[Manifest]:
    """The manifests that backend `cls` reads, its own file type first; with None, those whose
    runtime is installed here, in the given order."""
    if cls is None:
        return [m for m in manifests if backend_for(m.model_file).installed()]
    suffix = [Path(m.model_file).suffix.lower() for m in manifests]
    ours = [(cls.file_types.index(s), i) for i, s in enumerate(suffix) if s in cls.file_types]
    return [manifests[i] for _, i in sorted(ours)]


def default_artifact(backend: str | None = None, bundle: str = "default") -> Path:
    """The folder of a bundled model (see `default_manifest`)."""
    return default_manifest(backend, bundle).directory
