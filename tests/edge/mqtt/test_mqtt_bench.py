"""`emoedge bench --mqtt` runs end to end on a short schedule and reports what it measured."""

from __future__ import annotations

import argparse
import json

import pytest

from edge.mqtt.bench import run_mqtt_bench

pytestmark = pytest.mark.slow


def test_bench_reports_delivery_latency_cpu_and_reconnect(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    args = argparse.Namespace(devices=3, rate=5.0, seconds=1.0, json=out)
    assert run_mqtt_bench(args) == 0
    report = json.loads(out.read_text())
    load, reconnect = report["load"], report["reconnect"]
    assert load["sent"] == 15 and load["delivered"] == 15 and load["dropped"] == 0
    assert 0 < load["latency_ms_p50"] <= load["latency_ms_p99"] <= load["latency_ms_max"]
    assert load["publisher_cpu_us_per_msg"] > 0
    assert len(reconnect["reconnect_s"]) == reconnect["trials"] > 0
    assert all(
        gap >= r > 0 for gap, r in zip(reconnect["gap_s"], reconnect["reconnect_s"], strict=True)
    )
    printed = capsys.readouterr().out
    assert "delivered/sent   15/15" in printed and "reconnect after a broker restart" in printed
