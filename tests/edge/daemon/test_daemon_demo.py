"""`emoedge demo`: the whole loop on the bundled sample with an embedded mosquitto and a live
subscriber; it ends by itself with a summary. (Run with the tiny test model: the bundled
default model is exported late and may be absent.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures_daemon import emoedge, finish

pytestmark = pytest.mark.slow


def test_demo_runs_the_loop_and_summarises(tiny_model: Path) -> None:
    code, out, err = finish(
        emoedge("demo", "--model", str(tiny_model), "--seconds", "4"), timeout=120
    )
    assert code == 0, err
    assert "Traceback" not in err
    assert re.search(r"broker mqtt://127\.0\.0\.1:\d+", out)
    assert "  state  " in out  # the subscriber printed what the daemon published
    summary = re.search(r"(\d+) cycles, (\d+) events, (\d+) states, mean latency ([\d.]+) ms", out)
    assert summary, out
    assert int(summary.group(1)) > 0 and int(summary.group(3)) >= 1


def test_demo_plays_the_real_crema_d_clip_and_shows_what_the_face_says(
    tiny_model: Path,
) -> None:
    code, out, err = finish(
        emoedge("demo", "--sample", "crema-d", "--model", str(tiny_model)), timeout=120
    )
    assert code == 0, err
    assert "Traceback" not in err
    assert re.search(r"sees face.* face says \w+ [\d.]+", out), out  # the actor's face found
