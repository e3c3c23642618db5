"""One place assembles the daemon: in edge/, only edge.daemon.wiring builds the sources, the
detector, the audio ring, the pipeline and the daemon (`run`, `demo` and `bench --pipeline`
all go through it)."""

from __future__ import annotations

import ast

from tests.conftest import REPO

BUILDERS = {"make_camera", "make_microphone", "load_detector", "AudioRing", "Pipeline", "Daemon"}


def called_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.id if isinstance(func, ast.Name) else getattr(func, "attr", ""))
    return names


def test_only_the_wiring_assembles_the_daemon() -> None:
    builders = {
        str(path.relative_to(REPO)): sorted(called_names(ast.parse(path.read_text())) & BUILDERS)
        for path in (REPO / "edge").rglob("*.py")
    }
    assert {k: v for k, v in builders.items() if v} == {"edge/daemon/wiring.py": sorted(BUILDERS)}
