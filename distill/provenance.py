"""What produced a run's numbers besides the code, its seed and its data: the Python, the
machine, the numeric packages and PyTorch's thread count. The environment is built from
version ranges, and reruns of the same cross-corpus seeds have differed by several points per
corpus (docs/voice-cross-corpus.md); the same seed trains a different voice at one thread and
at two (floating-point sums split differently), so runs record them."""

from __future__ import annotations

import platform
from importlib import metadata

NUMERIC_PACKAGES = ("torch", "numpy", "scipy", "librosa", "soundfile", "soxr", "resemblyzer")


def environment() -> dict[str, str | int | None]:
    """Python, the machine, the version of each of NUMERIC_PACKAGES (None: not installed) and
    the number of threads PyTorch computes with in this process."""
    import torch

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        **{name: version(name) for name in NUMERIC_PACKAGES},
        "torch_threads": torch.get_num_threads(),
    }
