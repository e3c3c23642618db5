"""`emoedge bench --pipeline` runs both parts and writes its numbers (no speed asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures_daemon import emoedge, finish

pytestmark = pytest.mark.slow


def test_pipeline_bench_reports_stages_cpu_and_memory(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "bench.json"
    proc = emoedge("bench", "--pipeline", "--seconds", "2", "--json", str(out), str(tiny_model))
    code, stdout, err = finish(proc, timeout=120)
    assert code == 0, err
    assert "cycles/s" in stdout and "% of one core" in stdout
    result = json.loads(out.read_text())
    fast, live = result["fast"], result["realtime"]
    assert fast["cycles"] > 0 and fast["model_id"].startswith("student")
    assert set(fast["ms_per_cycle"]) == {"capture", "detect", "features", "inference", "publish"}
    assert fast["ms_per_cycle"]["inference"] > 0
    assert live["cycles"] > 0 and live["rss_mib"]["max"] > 0
