"""Fuzz tests (hypothesis) of what comes from outside: command payloads, configuration values
and manifests. Whatever they hold, the answer is a value or the project's own error naming the
problem, never another exception; whatever is accepted is finite and bounded."""

from __future__ import annotations

import json
import math
from dataclasses import astuple
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.core.config import Config, parse_config
from edge.core.errors import ConfigError, ModelError
from edge.core.manifest import load_manifest
from edge.mqtt.messages import COMMANDS, encode, parse_command
from tests.edge.core.test_manifest import edit, make_artifact

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
NUMBERS = st.one_of(
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e-300, 1e300, 2**63]),
)
SCALARS = st.one_of(NUMBERS, st.booleans(), st.text(max_size=12), st.none())
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                       inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
JSON_TEXT = st.one_of(
    VALUES.map(lambda v: json.dumps(v, allow_nan=True)),
    st.integers(1, 2000).map(lambda n: "[" * n),
    st.text(max_size=200),
).map(str.encode)


@FUZZ
@given(st.sampled_from(COMMANDS), st.one_of(JSON_TEXT, st.binary(max_size=300)))
def test_command_payloads(name: str, raw: bytes) -> None:
    value, reason = parse_command(name, raw)
    if reason:
        assert value is None
    else:
        encode({"value": value})  # what is accepted can be echoed in a result (finite JSON)


TABLES = {
    "": ["device_id"],
    "camera": ["source", "width", "height", "fps", "lores_width", "loop", "device"],
    "microphone": ["source", "sample_rate", "chunk", "offset_s", "device"],
    "model": ["threads", "backend", "providers"],
    "rates": ["inference_hz"],
    "smoothing": ["method", "alpha", "window"],
    "events": ["threshold", "hold_s", "heartbeat_s"],
    "detector": ["min_size", "score_threshold", "interval_s", "max_drift"],
    "queues": ["frames", "max_audio_wait_s"],
    "stats": ["interval_s"],
    "mqtt": ["port", "keepalive", "queue_size", "max_rate_per_topic", "heartbeat_s",
             "reconnect_min_s", "reconnect_max_s", "connect_timeout_s", "client_id", "prefix"],
}  # fmt: skip
ENTRIES = st.sampled_from([(t, k) for t, keys in TABLES.items() for k in keys])


def _numbers(value: object) -> list[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    if hasattr(value, "__dataclass_fields__"):
        return [n for field in astuple(value) for n in _numbers(field)]  # type: ignore[arg-type]
    return []


@FUZZ
@given(st.lists(st.tuples(ENTRIES, VALUES), min_size=1, max_size=4))
def test_config_values(entries: list) -> None:
    data: dict = {}
    for (table, key), value in entries:
        (data if not table else data.setdefault(table, {}))[key] = value
    try:
        config = parse_config(data)
    except ConfigError as error:
        assert str(error)
        return
    assert isinstance(config, Config)
    assert all(math.isfinite(n) for n in _numbers(config)), config


FRONT_END = st.sampled_from([
    ("face", k) for k in ("size", "mean", "std", "margin", "lift")
] + [("audio", k) for k in ("sample_rate", "window_s", "n_fft", "win_length", "hop_length",
                            "n_mels", "n_mfcc", "fmin", "fmax", "delta_width",
                            "vad_threshold_dbfs", "vad_min_voiced_fraction")])  # fmt: skip


@FUZZ
@given(st.lists(st.tuples(FRONT_END, NUMBERS), min_size=1, max_size=3))
def test_manifest_values(tmp_path_factory, changes: list) -> None:
    folder = tmp_path_factory.mktemp("fuzz-manifest")
    make_artifact(folder)
    data = json.loads((folder / "manifest.json").read_text())
    for (table, key), value in changes:
        data[table][key] = value
    edit(folder, face=data["face"], audio=data["audio"])
    try:
        manifest = load_manifest(Path(folder))
    except ModelError as error:
        assert str(error)
        return
    assert 8 <= manifest.face.size <= 1024 and 0 < manifest.audio.window_s <= 60
