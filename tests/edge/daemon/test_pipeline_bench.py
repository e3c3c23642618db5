"""`emoedge bench --pipeline` runs both parts and writes its numbers (no speed asserted); the
memory and CPU summary of the real-time part is computed from its samples as stated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.backends import BUNDLES
from edge.core.errors import UsageError
from edge.daemon.bench import _artifact, _resources
from edge.daemon.stats import STAGES
from tests.fixtures_daemon import emoedge, finish


@pytest.mark.slow
def test_pipeline_bench_reports_stages_cpu_and_memory(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "bench.json"
    proc = emoedge(
        "bench", "--pipeline", "--seconds", "1", "--duration", "3", "--rate", "5",
        "--json", str(out), str(tiny_model),
    )  # fmt: skip
    code, stdout, err = finish(proc, timeout=120)
    assert code == 0, err
    assert "cycles/s" in stdout and "% of one core" in stdout
    result = json.loads(out.read_text())
    fast, live = result["fast"], result["realtime"]
    assert fast["cycles"] > 0 and fast["model_id"].startswith("student")
    assert set(fast["ms_per_cycle"]) == set(STAGES)
    assert fast["ms_per_cycle"]["inference"] > 0 and 0 < fast["detections"] <= fast["cycles"]
    assert live["hz"] == 5 and live["cycles"] > 0 and live["rss_mib"]["max"] > 0
    assert live["seconds"] >= 2.5  # --duration 3, not --seconds 1
    assert live["over_time"] and all(w["cpu_percent"] >= 0 for w in live["over_time"])


def test_resources_summarise_cpu_windows_and_memory_growth() -> None:
    mib = 2**20
    # 101 samples a second apart: 25 % of a core throughout, memory +1 MiB every 10 s
    samples = [(float(t), 0.25 * t, 100 * mib + (t // 10) * mib) for t in range(101)]
    result = _resources(samples)
    assert len(result["over_time"]) == 10
    assert all(w["cpu_percent"] == pytest.approx(25.0) for w in result["over_time"])
    rss = result["rss_mib"]
    assert rss["at_10_percent"] == 101 and rss["end"] == 110 and rss["max"] == 110
    assert rss["growth_after_10_percent"] == 9
    assert rss["slope_mib_per_hour"] == pytest.approx(360.0, rel=0.05)
    flat = _resources([(float(t), 0.1 * t, 50 * mib) for t in range(30)])
    assert flat["rss_mib"]["slope_mib_per_hour"] == pytest.approx(0.0, abs=1e-9)


def test_the_pipeline_bench_runs_the_model_it_is_given(tiny_model: Path) -> None:
    assert _artifact("lite") == "lite"
    assert _artifact(str(BUNDLES / "lite")) == "lite"  # a bundled model's folder: by its name
    assert _artifact(str(tiny_model)) == str(tiny_model)
    with pytest.raises(UsageError, match="nowhere is neither a bundled model"):
        _artifact("nowhere")  # never the default in its place
