"""An adapting voice's statistics outlive the process (edge.daemon.voice_memory): where they
are kept, what is refused, and the real daemon continuing from them after a restart."""

from __future__ import annotations

import logging
import uuid

import numpy as np
import pytest

from edge.backends import default_manifest
from edge.core.config import EventConfig, ModelConfig, SmoothingConfig
from edge.core.manifest import VOICE_PRIOR_FILE
from edge.core.voice_norm import VoiceNorm
from edge.daemon.pipeline import Pipeline
from edge.daemon.stats import Stats
from edge.daemon.voice_memory import STATE_FILE, VoiceMemory, statistics_path
from edge.daemon.wiring import load_runner
from tests.fixtures_daemon import emoedge, finish, sample_config, write_toml

PRIOR = np.stack([np.zeros(4), np.ones(4)]).astype(np.float32)


def heard(norm: VoiceNorm, n: int, seed: int = 0) -> VoiceNorm:
    width = norm.prior.shape[1]
    for i, state in enumerate(np.random.default_rng(seed).normal(3.0, 0.5, (n, width))):
        norm.observe(state, 3.0 * i)
    return norm


def test_where_they_are_kept() -> None:
    assert statistics_path("off", {"STATE_DIRECTORY": "/var/lib/emoedge"}) is None
    assert statistics_path("auto", {}) is None  # not under systemd: in memory only
    systemd = {"STATE_DIRECTORY": "/var/lib/emoedge:/var/lib/other"}
    assert str(statistics_path("auto", systemd)) == f"/var/lib/emoedge/{STATE_FILE}"
    assert str(statistics_path("/srv/voice.npz", systemd)) == "/srv/voice.npz"


def test_a_restart_continues_where_it_stopped(tmp_path) -> None:
    path = tmp_path / "state" / STATE_FILE
    before = heard(VoiceNorm(PRIOR), 50)
    VoiceMemory(before, path).save()
    assert [p.name for p in path.parent.iterdir()] == [STATE_FILE]  # no partial file left
    after = VoiceNorm(PRIOR)
    assert VoiceMemory(after, path).load() == 50
    np.testing.assert_array_equal(after.norm, before.norm)
    for norm in (before, after):  # and both go on alike
        norm.observe(np.full(4, -2.0), 1e6)
    np.testing.assert_array_equal(after.norm, before.norm)


def test_it_saves_every_few_windows(tmp_path) -> None:
    path = tmp_path / STATE_FILE
    memory = VoiceMemory(heard(VoiceNorm(PRIOR), 3), path, save_every=3)
    memory.taken()
    memory.taken()
    assert not path.exists()
    memory.taken()
    assert VoiceNorm(PRIOR).restore(path) == 3


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not numpy at all", "not saved voice statistics"),
        (None, "saved by another model"),
    ],
)
def test_a_file_it_cannot_use_is_reported_and_the_prior_kept(
    tmp_path, caplog, content, reason
) -> None:
    path = tmp_path / STATE_FILE
    if content is None:  # statistics of a model with another prior
        heard(VoiceNorm(PRIOR * 2), 10).save(path)
    else:
        path.write_bytes(content)
    norm = VoiceNorm(PRIOR)
    with caplog.at_level(logging.WARNING):
        assert VoiceMemory(norm, path).load() == 0
    assert reason in caplog.text and "starting from the prior" in caplog.text
    np.testing.assert_array_equal(norm.norm, PRIOR)
    assert norm.heard == 0


def test_statistics_of_another_width_are_refused(tmp_path) -> None:
    path = tmp_path / STATE_FILE
    np.savez(path, version=1, prior=VoiceNorm(PRIOR).prior_digest(), heard=3.0,
             sum=np.zeros(5), squares=np.zeros(5))  # fmt: skip
    with pytest.raises(ValueError, match="wrong shape"):
        VoiceNorm(PRIOR).restore(path)


def test_a_failed_write_is_reported_once_and_the_statistics_kept(tmp_path, caplog) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    norm = heard(VoiceNorm(PRIOR), 5)
    memory = VoiceMemory(norm, blocked / STATE_FILE, save_every=1)
    with caplog.at_level(logging.WARNING):
        memory.taken()
        memory.taken()
    assert caplog.text.count("cannot be saved") == 1
    assert norm.heard == 5


def test_set_reset_voice_forgets_and_saves_that(tmp_path) -> None:
    runner = load_runner(ModelConfig(backend="onnxruntime"))  # the default model adapts
    path = tmp_path / STATE_FILE
    memory = VoiceMemory(heard(VoiceNorm(runner.voice_norm.prior), 5), path)
    runner.voice_norm = memory.norm
    stats = Stats()
    pipeline = Pipeline(runner, None, None, SmoothingConfig(), EventConfig(), stats,
                        voice_memory=memory)  # fmt: skip
    assert stats.snapshot()["counters"]["voice_statistics_windows"] == 5  # what it holds
    assert pipeline.reset_voice()
    assert stats.snapshot()["counters"]["voice_statistics_windows"] == 0
    assert memory.norm.heard == 0 and VoiceNorm(memory.norm.prior).restore(path) == 0
    np.testing.assert_array_equal(memory.norm.norm, memory.norm.prior)


@pytest.mark.slow
def test_the_daemon_under_systemd_keeps_what_it_heard(tmp_path, mqtt_broker) -> None:
    """`emoedge run` with the bundled default model (its voice adapts) and $STATE_DIRECTORY set
    as systemd sets it: the first run saves the windows it took; the second adds its own to
    them instead of starting again from the prior."""
    table = mqtt_broker.mqtt_table(prefix=f"v{uuid.uuid4().hex[:8]}")
    config = write_toml(tmp_path / "c.toml", sample_config("default", table))
    state = tmp_path / "state"
    prior = np.load(default_manifest("onnxruntime", "default").directory / VOICE_PRIOR_FILE)
    counts, logs = [], []
    for _ in range(2):
        code, _, err = finish(
            emoedge("run", "--config", str(config), env={"STATE_DIRECTORY": str(state)}), 120
        )
        assert code == 0, err
        counts.append(VoiceNorm(prior).restore(state / STATE_FILE))
        logs.append(err)
    assert counts[0] >= 1
    assert counts[1] == 2 * counts[0]
    assert "restored" in logs[1] and "restored" not in logs[0]
    assert f"'voice_statistics_windows': {round(counts[1])}" in logs[1]  # in the stats topic
