"""MQTT guarantees with the real daemon (`emoedge run --config FILE`, replaying the bundled
sample in a loop through a tiny model): the last will on SIGKILL, commands applied and
acknowledged, bad commands rejected while it keeps publishing, a wrong password exits 7, and of
two daemons with one device id one exits 7 while the other keeps running."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest

from tests.fixtures_daemon import emoedge, finish, sample_config, write_toml
from tests.fixtures_mqtt import Broker, MessageLog, wait_for

pytestmark = pytest.mark.slow
LOOP = {"camera": {"loop": True}, "microphone": {"loop": True}}


def _looping_daemon(
    tmp_path: Path, model: Path, broker: Broker, heartbeat_s: float = 30.0, **mqtt
) -> tuple[str, Path]:
    prefix = f"d{uuid.uuid4().hex[:8]}"
    table = broker.mqtt_table(prefix=prefix, max_rate_per_topic=100, **mqtt)
    tables = LOOP | {"events": {"heartbeat_s": heartbeat_s}}
    config = write_toml(tmp_path / "c.toml", sample_config(model, table, **tables))
    return f"{prefix}/testcam", config


def test_sigkill_leaves_the_last_will(tmp_path, tiny_model, mqtt_broker) -> None:
    base, config = _looping_daemon(tmp_path, tiny_model, mqtt_broker, keepalive=5)
    log = MessageLog(mqtt_broker, f"{base}/availability")
    proc = emoedge("run", "--config", str(config))
    try:
        wait_for(lambda: log.on(f"{base}/availability") == [b"online"], 60, "online")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: log.on(f"{base}/availability")[-1:] == [b"offline"], what="last will")
    finally:
        proc.kill()
        finish(proc)
        log.close()
    late = MessageLog(mqtt_broker, f"{base}/availability")
    wait_for(lambda: late.messages, what="retained availability")
    assert late.messages == [(f"{base}/availability", b"offline", True)]
    late.close()


def test_commands_are_applied_acknowledged_or_rejected(tmp_path, tiny_model, mqtt_broker):
    base, config = _looping_daemon(tmp_path, tiny_model, mqtt_broker, heartbeat_s=0.3)
    log = MessageLog(mqtt_broker, [f"{base}/set/+/result", f"{base}/state", f"{base}/events"])
    proc = emoedge("run", "--config", str(config))

    def events() -> list[dict]:
        return [json.loads(e) for e in log.on(f"{base}/events")]

    def is_paused(message: tuple[str, bytes, bool]) -> bool:
        return message[0] == f"{base}/state" and json.loads(message[1])["state"] == "paused"

    def paused_since_first() -> int:
        return sum(map(is_paused, log.messages))

    def command(name: str, payload: str) -> dict:
        before = len(log.on(f"{base}/set/{name}/result"))
        mqtt_publish.single(f"{base}/set/{name}", payload, qos=1, port=mqtt_broker.port)
        wait_for(lambda: len(log.on(f"{base}/set/{name}/result")) > before, what=name)
        return json.loads(log.on(f"{base}/set/{name}/result")[-1])

    try:
        wait_for(lambda: log.on(f"{base}/state"), 60, "states")
        assert command("rate", '{"hz": 2}') | {"epoch_ms": 0, "timestamp": ""} == {
            "schema_version": 1, "name": "rate", "ok": True, "message": "inference at 2 Hz",
            "value": {"hz": 2}, "extra": {}, "epoch_ms": 0, "timestamp": "",
        }  # fmt: skip
        assert command("threshold", '{"confidence": 0.0, "hold_s": 0}')["ok"]
        wait_for(lambda: any(e["current"] for e in events()), what="a reported emotion")
        assert command("pause", "")["message"] == "paused"
        # the paused state is re-sent every heartbeat (0.3 s): five of them span 2+ inference
        # periods at 2 Hz, in which a daemon that kept inferring would publish live states
        wait_for(lambda: paused_since_first() >= 5, what="the paused state, re-sent")
        after = log.messages[next(i for i, m in enumerate(log.messages) if is_paused(m)) :]
        assert all(is_paused(m) for m in after if m[0] == f"{base}/state"), after
        assert all(m[0] != f"{base}/events" for m in after), "an event while paused"
        assert events()[-1]["current"] is None  # the event that ends the reported emotion
        assert command("threshold", '{"confidence": 0.4, "hold_s": 1}')["ok"]
        assert command("resume", "{}")["message"] == "resumed"
        assert command("fusion", '{"mode": "face"}')["message"] == "fusion face, voice weight 1.0"
        wait_for(lambda: json.loads(log.on(f"{base}/state")[-1])["fusion"] == "face",
                 what="a state in fusion mode face")  # fmt: skip
        refused = command("reset_voice", "")  # the tiny model's voice does not adapt
        assert (refused["ok"], refused["message"]) == (False, "this model's voice does not adapt")
        for name, bad in [("rate", '{"hz": -1}'), ("rate", "fast"), ("threshold", "{}"),
                          ("pause", "x" * 5000), ("reboot", "{}"), ("fusion", '{"mode": "loud"}'),
                          ("fusion", '{"voice_weight": 9}'),
                          ("reset_voice", '{"now": 1}')]:  # fmt: skip
            result = command(name, bad)
            assert result["ok"] is False and result["message"], result
        states = len(log.on(f"{base}/state"))
        wait_for(lambda: len(log.on(f"{base}/state")) > states, what="still publishing")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        code, _, err = finish(proc, timeout=30)
    finally:
        proc.kill()
        log.close()
    assert code == 0, err
    assert "command" in err and "rejected" in err  # rejections are logged
    assert "Traceback" not in err


def test_wrong_password_makes_run_exit_7(tmp_path, tiny_model, mqtt_broker) -> None:
    wrong = tmp_path / "pw"
    wrong.write_text("wrong")
    table = mqtt_broker.mqtt_table("auth", password_file=str(wrong))
    config = write_toml(tmp_path / "c.toml", sample_config(tiny_model, table))
    code, _, err = finish(emoedge("run", "--config", str(config)), timeout=60)
    assert code == 7
    assert "emoedge run: error: the broker at" in err and "refused" in err
    assert "wrong" not in err.replace("wrong password", "")


def test_a_second_daemon_with_the_same_device_id_ends_the_fight_with_exit_7(
    tmp_path, tiny_model, mqtt_broker
) -> None:
    _, config = _looping_daemon(
        tmp_path, tiny_model, mqtt_broker, reconnect_min_s=0.1, reconnect_max_s=0.5
    )
    twins = [emoedge("run", "--config", str(config)) for _ in range(2)]
    try:
        wait_for(lambda: any(p.poll() is not None for p in twins), 120, "a twin to stop")
        loser = next(p for p in twins if p.poll() is not None)
        survivor = next(p for p in twins if p is not loser)
        code, _, err = finish(loser, timeout=30)
        assert code == 7
        assert "another client is using the client id" in err and "Traceback" not in err
        assert survivor.poll() is None
        survivor.send_signal(signal.SIGTERM)
        assert finish(survivor, timeout=60)[0] == 0
    finally:
        for proc in twins:
            if proc.returncode is None:
                proc.kill()
                proc.communicate()
