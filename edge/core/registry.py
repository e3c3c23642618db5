"""One way to choose an implementation by name: runtime backends, face detectors, capture
sources and export formats are each a `Registry`.

    DETECTORS = Registry[type[FaceDetector]]("detector")

    @DETECTORS.register("haar")
    class HaarDetector: ...

    FORMATS.register_lazy("tflite", "export.tflite_export:TFLITE")  # imported when first used
    DETECTORS.get("haar")           # the class; an unknown name is a UsageError naming the choices

An entry whose module pulls in a heavy or optional dependency is registered lazily, by
"module:attribute", so that listing the names imports nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Generic, TypeVar

from edge.core.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named implementations of one kind, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under `name`."""

        def add(obj: T) -> T:
            self._add(name, obj)
            return obj

        return add

    def register_lazy(self, name: str, target: str) -> None:
        """Register "package.module:attribute", imported the first time `name` is asked for."""
        if ":" not in target:
            raise ValueError(f"lazy {self.kind} {name!r}: target must be 'module:attribute'")
        self._add(name, target)

    def _add(self, name: str, entry: T | str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        """The implementation registered as `name`; a UsageError listing the names otherwise."""
        if name not in self._entries:
            raise UsageError(
                f"unknown {self.kind} {name!r}; allowed: {', '.join(self._entries) or '(none)'}"
            )
        entry = self._entries[name]
        if isinstance(entry, str):
            module, attribute = entry.split(":", 1)
            entry = self._entries[name] = getattr(import_module(module), attribute)
        return entry

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order (imports nothing)."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
