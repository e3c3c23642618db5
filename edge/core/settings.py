"""Configuration keys declared once: each key is a dataclass field whose `setting(...)` says its
default, range, unit, allowed values and help. `read_table` validates a TOML table against
such a dataclass (errors name the full key, the value and what is allowed) and
edge.core.template renders the commented template from the same declaration.

Inside `collected()` an invalid value is recorded and its default used, so that one
ConfigError at the end lists every problem of a file at once.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from edge.core.errors import ConfigError

T = TypeVar("T")
_errors: ContextVar[list[str] | None] = ContextVar("config_errors", default=None)
KEY = "emoedge.key"  # where a field's Key lives in its metadata


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # no example; from a reader: no value (the problem reported)


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


@dataclass(frozen=True)
class Key:
    """How one key is checked and documented; the field's type says which values it takes.

    A value is accepted when it has the type (`accepts` where TOML spells it otherwise), is
    finite, and, after conversion (int to float, list to tuple, then `convert`), lies in
    [low, high] (`low_open`: (low, high]), is one of `choices` and passes `check`. `rule`
    says what is allowed in words where the range or the choices do not. `read` replaces all
    that for a key of several forms; `tables` makes the key a table of named sub-tables, each
    declared by its own dataclass, where the keys in `refused` are refused with their message.
    `example` shows the key commented out in the template with that value; `at` is the key's
    dotted place below its table when that is not the field's name; `deprecated` names the
    key that replaces it (the template leaves it out).
    """

    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    unit: str = ""
    choices: tuple[Any, ...] = ()
    check: Callable[[Any], bool] | None = None
    rule: str = ""
    accepts: Any = None
    convert: Callable[[Any], Any] | None = None
    read: Callable[[Any, str], Any] | None = None
    tables: Callable[[], Mapping[str, type]] | None = None
    refused: Mapping[str, str] = field(default_factory=dict)
    example: Any = UNSET
    at: str = ""
    deprecated: str = ""

    def allowed(self, hint: Any) -> str:
        """What the key accepts, in words (the `allowed:` part of its errors)."""
        if self.rule:
            return self.rule
        if self.choices:
            return ", ".join(map(str, self.choices))
        if self.low is not None and base_type(hint) is int:
            return f"{self.low}..{self.high}{self.unit}"
        if self.low is not None:
            return f"a number in {'(' if self.low_open else '['}{self.low}, {self.high}]{self.unit}"
        return _words(self.accepts or hint)

    def fits(self, value: Any) -> bool:
        """True when an already converted value lies in the range and choices and passes check."""
        if self.choices and value not in self.choices:
            return False
        if self.low is not None:
            above = value > self.low if self.low_open else value >= self.low
            if not (above and value <= self.high):
                return False
        return self.check is None or bool(self.check(value))


@dataclass(frozen=True)
class Extra:
    """A key that is no field of its dataclass: its table's `checked` reads it (e.g. mqtt.url)."""

    name: str
    default: Any
    key: Key


@dataclass(frozen=True)
class Declared:
    """One declared key of a dataclass: the field, where it sits in the table, its rules."""

    name: str
    path: tuple[str, ...]
    hint: Any
    key: Key
    default: Any

    @property
    def section(self) -> bool:
        """True for a key that holds one sub-table declared by a dataclass."""
        return is_dataclass(base_type(self.hint)) and self.key.read is None


def setting(default: Any, *, help: str, **rules: Any) -> Any:
    """A dataclass field that declares one configuration key (its rules: see Key)."""
    key = Key(help=help, **rules)
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={KEY: key})
    return field(default=default, metadata={KEY: key})


def section(cls: type, *, help: str = "") -> Any:
    """A dataclass field holding a sub-table declared by the dataclass `cls`."""
    return field(default_factory=cls, metadata={KEY: Key(help=help)})


@cache
def declared(cls: type) -> tuple[Declared, ...]:
    """The keys `cls` declares, in field order."""
    hints = get_type_hints(cls)
    out = []
    for f in fields(cls):
        key = f.metadata.get(KEY, Key())
        default = f.default if f.default_factory is MISSING else f.default_factory()
        path = tuple(key.at.split(".")) if key.at else (f.name,)
        out.append(Declared(f.name, path, hints[f.name], key, default))
    return tuple(out)


def extras(cls: type) -> tuple[Extra, ...]:
    """The keys of `cls`'s table that are no fields (its EXTRA_KEYS)."""
    return tuple(getattr(cls, "EXTRA_KEYS", ()))


def join(key: str, name: str) -> str:
    """The full name of key `name` in table `key` ("" is the document)."""
    return f"{key}.{name}" if key else name


def read_table(cls: type[T], data: Any, key: str, refused: Mapping[str, str] = {}) -> T:
    """Validate the table `data` (full name `key`) against the dataclass `cls`: every problem
    reported and its default used; then `cls.checked(table, key)` where it exists (the rules
    between keys). Keys in `refused` (and cls.REFUSED) are refused with their message."""
    if not isinstance(data, dict):
        report(f"{key}: expected a table, got {data!r}")
        return cls()
    refused = {**getattr(cls, "REFUSED", {}), **refused}
    keys = [d for d in declared(cls) if d.path[0] not in refused]
    tables = _check_names(cls, keys, data, key, refused)
    values: dict[str, Any] = {}
    for d in keys:
        table = tables.get(d.path[:-1])
        if table is not None and d.path[-1] in table:
            value = _read_value(d, table[d.path[-1]], join(key, ".".join(d.path)))
            if value is not UNSET:
                values[d.name] = value
    result = cls(**values)
    checked = getattr(result, "checked", None)
    return checked(data, key) if checked else result


def _check_names(
    cls: type, keys: list[Declared], data: dict, key: str, refused: Mapping[str, str]
) -> dict[tuple[str, ...], dict]:
    """Report unknown and refused names in `data` and in the tables the paths of `keys` pass
    through; the tables by path (a table that is not one reported and left out)."""
    names: dict[tuple[str, ...], set[str]] = {(): {e.name for e in extras(cls)}}
    for d in keys:
        for i in range(len(d.path)):
            names.setdefault(d.path[:i], set()).add(d.path[i])
    tables: dict[tuple[str, ...], dict] = {}
    for path, allowed in names.items():
        if path and path[:-1] not in tables:
            continue  # below a table that is none
        table = tables[path[:-1]].get(path[-1], {}) if path else data
        if not isinstance(table, dict):
            report(f"{join(key, '.'.join(path))}: expected a table, got {table!r}")
            continue
        tables[path] = table
        for name in sorted(set(table) - allowed):
            full = join(key, ".".join((*path, name)))
            if not path and name in refused:
                report(f"{full}: {refused[name].format(key=key)}")
            else:
                report(f"{full}: unknown key; allowed keys: {', '.join(sorted(allowed))}")
    return tables


def _read_value(d: Declared, value: Any, full: str) -> Any:
    """The accepted value of one key, or UNSET (reported) for the default."""
    if d.key.read is not None:
        return d.key.read(value, full)
    if d.key.tables is not None:
        return read_tables(d.key.tables(), value, full, d.key.refused)
    if d.section:
        return read_table(base_type(d.hint), value, full)
    if _is(value, d.key.accepts or d.hint):
        converted = _converted(value, d.hint)
        if d.key.convert is not None:
            converted = d.key.convert(converted)
        if d.key.fits(converted):
            return converted
    report(f"{full}: invalid value {value!r}; allowed: {d.key.allowed(d.hint)}")
    return UNSET


def read_tables(
    kinds: Mapping[str, type], data: Any, key: str, refused: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """A table of named sub-tables, each validated by its own dataclass in `kinds`: the keys
    given in each, by name (the rest keep their declared defaults where they are used)."""
    if not isinstance(data, dict):
        report(f"{key}: expected a table, got {data!r}")
        return {}
    given: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if name not in kinds:
            report(f"{join(key, name)}: unknown key; allowed keys: {', '.join(sorted(kinds))}")
            continue
        options = read_table(kinds[name], table, join(key, name), refused)
        if isinstance(table, dict):
            own = {d.name for d in declared(kinds[name])} - set(refused)
            given[name] = {k: getattr(options, k) for k in table if k in own}
    return given


def base_type(hint: Any) -> Any:
    """The type without None: `X | None` -> X."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _is(value: Any, hint: Any) -> bool:
    """True when the TOML value is of the type `hint` (floats finite, bools no numbers)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_is(value, arg) for arg in get_args(hint))
    if origin is tuple:
        return isinstance(value, list) and all(_is(v, get_args(hint)[0]) for v in value)
    if hint is float:
        return _is(value, int) or (isinstance(value, float) and math.isfinite(value))
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return hint is not type(None) and isinstance(value, hint)


def _converted(value: Any, hint: Any) -> Any:
    """An accepted TOML value as the field's type: int to float, list to tuple."""
    if base_type(hint) is float:
        return float(value)
    if get_origin(hint) is tuple:
        return tuple(value)
    return value


_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _words(hint: Any) -> str:
    """A type in words: 'an integer or a string', 'a list of strings'."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_words(a) for a in get_args(hint) if a is not type(None))
    if origin is tuple:
        return f"a list of {_words(get_args(hint)[0]).split(' ', 1)[-1]}s"
    return _WORDS.get(hint, getattr(hint, "__name__", str(hint)))
