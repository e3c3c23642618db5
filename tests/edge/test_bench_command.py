"""`emoedge bench` is an edge command whose benchmarks are plugins: the exported artifacts by
default (the workstation's), the device pipeline with --pipeline and MQTT with --mqtt (edge's),
each with its own options beside the shared ones."""

from __future__ import annotations

import pytest

from edge.cli import build_parser, load_benchmarks, load_commands


def test_bench_is_edges_and_its_benchmarks_are_plugins() -> None:
    assert load_commands()["bench"].run.__module__ == "edge.cli"
    benchmarks = load_benchmarks()
    assert benchmarks.names() == ("artifacts", "mqtt", "pipeline")
    assert benchmarks.get("pipeline").run.__module__ == "edge.daemon.bench"
    assert benchmarks.get("mqtt").run.__module__ == "edge.mqtt.bench"
    assert benchmarks.get("artifacts").extra == "workstation"


@pytest.mark.parametrize(
    ("argv", "benchmark"),
    [
        (["DIR", "--threads", "1", "--runs", "5"], "artifacts"),
        (["--pipeline", "--seconds", "1", "--duration", "3", "DIR"], "pipeline"),
        (["--mqtt", "--devices", "3", "--rate", "5"], "mqtt"),
    ],
)
def test_a_flag_chooses_the_benchmark(argv: list[str], benchmark: str) -> None:
    args = build_parser(load_commands()).parse_args(["bench", *argv])
    assert args.benchmark == benchmark


def test_two_benchmarks_at_once_are_refused() -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser(load_commands()).parse_args(["bench", "--pipeline", "--mqtt"])
    assert exit_.value.code == 2
