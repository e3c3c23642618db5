"""OpenCV as an optional accelerator: the module when it is installed, else None.

The edge extra installs opencv-python-headless, and the functions that use it here fall back to
numpy code that gives the same result (within rounding, tested) where it is absent.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def optional_cv2() -> Any | None:
    """The cv2 module, or None when OpenCV is not installed."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2
