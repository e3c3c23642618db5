"""The one registry mechanism: decorator and lazy entries, clear errors for unknown names."""

from __future__ import annotations

import sys

import pytest

from edge.core.config import CAMERA_SOURCES, DETECTORS, MIC_SOURCES
from edge.core.errors import ConfigError, UsageError
from edge.core.registry import Registry


def test_decorated_entries_are_found_by_name_in_order() -> None:
    things: Registry[type] = Registry("thing")

    @things.register("b")
    class B: ...

    @things.register("a")
    class A: ...

    assert things.get("a") is A and things.get("b") is B
    assert things.names() == ("b", "a") and list(things) == ["b", "a"] and len(things) == 2
    assert "a" in things and "c" not in things


def test_unknown_name_is_a_usage_error_listing_the_choices() -> None:
    things: Registry[int] = Registry("colour")
    things.register("red")(1)
    with pytest.raises(UsageError, match=r"unknown colour 'blue'; allowed: red"):
        things.get("blue")


def test_registering_a_name_twice_is_refused() -> None:
    things: Registry[int] = Registry("thing")
    things.register("x")(1)
    with pytest.raises(ValueError, match="registered twice"):
        things.register_lazy("x", "json:dumps")


def test_lazy_entries_import_their_module_only_when_asked_for() -> None:
    sys.modules.pop("colorsys", None)
    things: Registry[object] = Registry("thing")
    things.register_lazy("hls", "colorsys:rgb_to_hls")
    assert things.names() == ("hls",) and "colorsys" not in sys.modules
    import colorsys

    assert things.get("hls") is colorsys.rgb_to_hls


def test_lazy_target_must_name_module_and_attribute() -> None:
    with pytest.raises(ValueError, match="module:attribute"):
        Registry("thing").register_lazy("x", "json")


def test_the_config_allows_exactly_the_registered_implementations() -> None:
    from edge.backends import BACKENDS
    from edge.core.config import parse_config

    assert parse_config({}).camera.source in CAMERA_SOURCES
    assert CAMERA_SOURCES == ("picamera2", "opencv", "file", "none")
    assert MIC_SOURCES == ("pyaudio", "file", "none")
    assert DETECTORS == ("blazeface", "haar")
    assert BACKENDS.names() == ("litert", "onnxruntime", "openvino")
    with pytest.raises(
        ConfigError, match=r"camera\.source.*allowed: picamera2, opencv, file, none"
    ):
        parse_config({"camera": {"source": "webcam"}})
