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


def default_manifest(backend: str | None = None, bundle: str = "default") -> Manifest:
    """The verified manifest of a bundled model (BUNDLED_MODELS; the default one unless
    named): the first in DEFAULT_ORDER whose runtime is installed here, or with `backend` the
    first in its own file type (OpenVINO's IR before an ONNX file it can also read)."""
    if bundle not in BUNDLED_MODELS:
        raise UsageError(f"bundled model {bundle!r}: {', '.join(BUNDLED_MODELS)} expected")
    cls = None if backend is None else BACKENDS.get(backend)
    readable: list[tuple[int, Manifest]] = []
    for name in DEFAULT_ORDER:
        folder = BUNDLES / bundle / name
        if not (folder / "manifest.json").is_file():
            continue
        manifest = load_manifest(folder)
        if cls is None:
            if backend_for(manifest.model_file).installed():
                return manifest
            continue
        suffix = Path(manifest.model_file).suffix.lower()
        if suffix in cls.file_types:
            readable.append((cls.file_types.index(suffix), manifest))
    if readable:
        return min(readable, key=lambda r: r[0])[1]
    raise ModelError(
        f"no bundled {bundle} model{f' for backend {backend}' if backend else ''} under "
        f"{BUNDLES / bundle}; export one (make {bundle}-model) or pass a model path"
    )


def default_artifact(backend: str | None = None, bundle: str = "default") -> Path:
    """The folder of a bundled model (see `default_manifest`)."""
    return default_manifest(backend, bundle).directory
