"""One configuration table being validated: typed getters whose errors name the full key,
the value and what is allowed. Shared by the daemon's config and its `[mqtt]` table.

Inside `collected()` an invalid value is recorded and its default used, so that one
ConfigError at the end lists every problem of a file at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from edge.core.errors import ConfigError

T = TypeVar("T")
_errors: ContextVar[list[str] | None] = ContextVar("config_errors", default=None)


def report(message: str) -> None:
    """Record a configuration problem inside `collected()`; raise it as a ConfigError outside."""
    errors = _errors.get()
    if errors is None:
        raise ConfigError(message)
    errors.append(message)


@contextmanager
def collected() -> Iterator[None]:
    """Validate a whole document: every problem reported (or raised as ConfigError) inside is
    raised at the end as one ConfigError listing them all. Nested uses join the outer one."""
    if _errors.get() is not None:
        yield
        return
    errors: list[str] = []
    token = _errors.set(errors)
    try:
        yield
    except ConfigError as error:
        errors.append(str(error))
    finally:
        _errors.reset(token)
    if len(errors) == 1:
        raise ConfigError(errors[0])
    if errors:
        raise ConfigError(f"{len(errors)} problems:\n  " + "\n  ".join(errors))


def section(parse: Callable[[], T], default: T) -> T:
    """`parse()`, or `default` with its ConfigError reported (the rest is still checked)."""
    try:
        return parse()
    except ConfigError as error:
        report(str(error))
        return default


class ConfigTable:
    """One TOML table being validated: typed getters whose errors name `section.key`."""

    def __init__(self, data: Any, section: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{section}: expected a table, got {data!r}")
        self.data = data
        self.section = section

    def key(self, name: str) -> str:
        return f"{self.section}.{name}" if self.section else name

    def check_keys(self, allowed: set[str]) -> None:
        for name in sorted(set(self.data) - allowed):
            report(f"{self.key(name)}: unknown key; allowed keys: {', '.join(sorted(allowed))}")

    def get(
        self,
        name: str,
        kinds: tuple[type, ...],
        default: Any,
        check: Callable[[Any], bool] = lambda v: True,
        allowed: str = "",
    ) -> Any:
        if name not in self.data:
            return default
        value = self.data[name]
        ok_type = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        finite = not isinstance(value, float) or math.isfinite(value)
        if not ok_type or not finite or not check(value):
            rule = allowed or " or ".join(k.__name__ for k in kinds)
            report(f"{self.key(name)}: invalid value {value!r}; allowed: {rule}")
            return default
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        return self.get(name, (str,), default, lambda v: v in choices, ", ".join(choices))

    def number(self, name: str, default: float, low: float, high: float, unit: str = "") -> float:
        rule = f"a number in [{low}, {high}]{unit}"
        return self.get(name, (int, float), default, lambda v: low <= v <= high, rule)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        return self.get(name, (int,), default, lambda v: low <= v <= high, f"{low}..{high}")

    def flag(self, name: str, default: bool) -> bool:
        return self.get(name, (bool,), default, allowed="true or false")

    def sub(self, name: str) -> ConfigTable:
        return ConfigTable(self.data.get(name, {}), self.key(name))
