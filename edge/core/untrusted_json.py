"""JSON from outside the process (MQTT commands, manifests): parsed with bounds, so that what
is accepted is finite and shallow, and what is not is a ValueError naming the problem."""

from __future__ import annotations

import json
import math
from typing import Any

DEFAULT_MAX_DEPTH = 4  # flat objects, as MQTT commands are; deeper is refused before parsing


def nesting_depth(text: str) -> int:
    """The deepest nesting of JSON arrays and objects in `text` (brackets inside strings do
    not count); cheap and without recursion, so it can run before the parser."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


JSON_WHITESPACE = " \t\n\r"  # RFC 8259 section 2


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of the range of a finite number")
    return value


def decode_json(raw: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse untrusted JSON: ValueError for non-UTF-8 bytes, nesting deeper than
    `max_depth`, NaN/Infinity and numbers that overflow to infinity (empty, or JSON's own
    whitespace alone, means {}; other characters Python counts as space, such as \x1c, are
    no JSON)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 (byte {error.start})") from None
    if not text.strip(JSON_WHITESPACE):
        return {}
    if nesting_depth(text) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
