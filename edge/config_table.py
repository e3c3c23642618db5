"""One configuration table being validated: typed getters whose errors name the full key,
the value and what is allowed. Shared by the daemon's config and its `[mqtt]` table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.errors import ConfigError


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
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise ConfigError(
                f"{self.key(unknown[0])}: unknown key; allowed keys: {', '.join(sorted(allowed))}"
            )

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
        if not ok_type or not check(value):
            rule = allowed or " or ".join(k.__name__ for k in kinds)
            raise ConfigError(f"{self.key(name)}: invalid value {value!r}; allowed: {rule}")
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
