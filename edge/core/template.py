"""The commented configuration template, rendered from the declared keys (edge.core.settings):
table by table, each key with its help, what it allows and its default (commented out where it
has none or the declaration gives an example instead)."""

from __future__ import annotations

import textwrap
from collections.abc import Collection
from dataclasses import is_dataclass
from typing import Any

from edge.core.settings import UNSET, Declared, Key, base_type, declared, extras, join

WIDTH = 100


def render(cls: type, header: str) -> str:
    """The template of the document declared by the dataclass `cls`, below a `header` comment."""
    lines = [*_comment(header), ""]
    _table(cls, "", lines, commented=False)
    return "\n".join(lines) + "\n"


def _table(
    cls: type, name: str, lines: list[str], commented: bool, skip: Collection[str] = ()
) -> None:
    """The keys of one table, then its sub-tables in declaration order."""
    mark = "# " if commented else ""
    for extra in extras(cls):
        _key(extra.name, extra.default, extra.key, None, lines, commented)
    groups: dict[str, list[Declared]] = {}
    for d in declared(cls):
        if d.name in skip or d.key.deprecated:
            continue
        if len(d.path) == 1 and not _is_table(d):
            _key(d.name, d.default, d.key, d.hint, lines, commented)
        else:
            groups.setdefault(d.path[0], []).append(d)
    for group, members in groups.items():
        full, first = join(name, group), members[0]
        lines.append("")
        if _is_table(first):
            lines += _comment(first.key.help)
        if first.key.tables is not None:
            for option, kind in first.key.tables().items():
                if any(d.name not in first.key.refused for d in declared(kind)):
                    lines.append(f"# [{full}.{option}]")
                    _table(kind, f"{full}.{option}", lines, True, first.key.refused)
        elif _is_table(first):
            lines.append(f"{mark if first.default is not None else '# '}[{full}]")
            _table(base_type(first.hint), full, lines, commented or first.default is None)
        else:  # keys placed in a table of their own (`at`)
            lines.append(f"{mark}[{full}]")
            for d in members:
                _key(d.path[-1], d.default, d.key, d.hint, lines, commented)


def _is_table(d: Declared) -> bool:
    return d.key.tables is not None or is_dataclass(base_type(d.hint))


def _key(name: str, default: Any, key: Key, hint: Any, lines: list[str], commented: bool) -> None:
    """One key: its help (what it allows after its first paragraph) as a comment, then
    `name = value`."""
    first, *rest = key.help.split("\n")
    if base_type(hint) is not bool:
        first = f"{first} Allowed: {key.allowed(hint)}.".lstrip()
    lines += _comment("\n".join([first, *rest]))
    value = default if key.example is UNSET else key.example
    if value is None:
        raise ValueError(f"key {name!r} has no default: declare an example for the template")
    shown = commented or key.example is not UNSET
    lines.append(f"{'# ' if shown else ''}{name} = {toml_value(value)}")


def _comment(text: str) -> list[str]:
    """`text` as comment lines of at most WIDTH characters; a line indented by four spaces
    (an example) is kept as it is."""
    lines = []
    for paragraph in text.split("\n"):
        if paragraph.startswith("    "):
            lines.append(f"# {paragraph.strip()}")
            continue
        wrapped = textwrap.wrap(paragraph, WIDTH - 2, break_long_words=False,
                                break_on_hyphens=False)  # fmt: skip
        lines += [f"# {line}" for line in wrapped]
    return lines


def toml_value(value: Any) -> str:
    """A TOML literal for a default: a string, bool, number or a list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML literal for {value!r}")
