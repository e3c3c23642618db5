"""`emoedge bench --mqtt`: MQTT load and reconnect benchmark on loopback (a private mosquitto).

Load: `devices` simulated devices (one `MqttPublisher` each, all in one child process)
publish QoS 1 events at `rate` Hz each for `seconds`, through one broker, to one subscriber.
Reported: delivered / sent, end-to-end latency p50 / p99 (publish call to subscriber callback,
same clock), and the publishing process's CPU time per message.
Reconnect: the broker is SIGKILLed and restarted; reported is the median time from the broker
listening again to the publisher being connected, and the gap since the kill.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edge.cli import Command
from edge.core.errors import UsageError
from edge.mqtt.mosquitto import HOST, MosquittoProcess, free_port

RECONNECT_TRIALS = 5
DRAIN_S = 10.0
EVENT_QOS = 1


def _publishers(port: int, devices: int, rate: float, seconds: float, conn: Any) -> None:
    """Child process: run the publishers, send back send times and CPU time."""
    from edge.mqtt.config import parse_mqtt_config
    from edge.mqtt.messages import EmotionEvent
    from edge.mqtt.publisher import MqttPublisher

    config = parse_mqtt_config({
        "url": f"mqtt://{HOST}:{port}", "discovery": False,
        "max_rate_per_topic": max(20.0, 2 * rate), "queue_size": int(rate * seconds) + 100,
    })  # fmt: skip
    publishers = [MqttPublisher(config, f"bench{i:03d}", "bench") for i in range(devices)]
    for publisher in publishers:
        publisher.start()
    conn.send("ready")
    conn.recv()  # the subscriber is listening
    total = int(devices * rate * seconds)
    sent_at = [0.0] * total
    interval = 1.0 / (devices * rate)
    cpu0, start = time.process_time(), time.monotonic()
    for k in range(total):
        due = start + k * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        seq, device = divmod(k, devices)
        sent_at[k] = time.time()
        ms = int(sent_at[k] * 1000)
        event = EmotionEvent("neutral", "happy", 0.1, 0.9, ms, seq, "bench")
        publishers[device].publish_event(event)
    for publisher in publishers:
        publisher.stop()
    cpu = time.process_time() - cpu0
    dropped = sum(p.counters()["dropped"] for p in publishers)
    conn.send({"sent_at": sent_at, "cpu_s": cpu, "wall_s": time.monotonic() - start,
               "dropped": dropped})  # fmt: skip


class _Receiver:
    """One subscriber to every device's events, recording (device index, seq) -> arrival."""

    def __init__(self, port: int, devices: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.devices = devices
        self.arrivals: dict[int, float] = {}
        self.duplicates = 0
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(HOST, port)
        self.client.subscribe("emoedge/+/events", EVENT_QOS)
        self.client.loop_start()
        if not ready.wait(10):
            raise UsageError("the benchmark subscriber could not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.time()
        device = int(msg.topic.split("/")[1][len("bench") :])
        k = json.loads(msg.payload)["seq"] * self.devices + device
        with self._lock:
            if k in self.arrivals:
                self.duplicates += 1
            else:
                self.arrivals[k] = now

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load_test(broker: MosquittoProcess, devices: int, rate: float, seconds: float) -> dict:
    """Run the load test against `broker`; the numbers as a dict."""
    port = broker.ports[0]
    receiver = _Receiver(port, devices)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_publishers, args=(port, devices, rate, seconds, child))
    proc.start()
    try:
        if not parent.poll(60) or parent.recv() != "ready":
            raise UsageError("the simulated devices did not connect within 60 s")
        parent.send("go")
        if not parent.poll(seconds * 3 + 60):
            raise UsageError("the simulated devices did not finish in time")
        result = parent.recv()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    sent_at = result["sent_at"]
    deadline = time.monotonic() + DRAIN_S
    while len(receiver.arrivals) < len(sent_at) and time.monotonic() < deadline:
        time.sleep(0.05)
    receiver.close()
    latencies = [(receiver.arrivals[k] - t) * 1000 for k, t in enumerate(sent_at)
                 if k in receiver.arrivals]  # fmt: skip
    sent = len(sent_at)
    return {
        "devices": devices,
        "rate_hz": rate,
        "seconds": seconds,
        "sent": sent,
        "delivered": len(latencies),
        "delivered_ratio": len(latencies) / sent if sent else 0.0,
        "duplicates": receiver.duplicates,
        "dropped": result["dropped"],
        "latency_ms_p50": _percentile(latencies, 0.50) if latencies else None,
        "latency_ms_p99": _percentile(latencies, 0.99) if latencies else None,
        "latency_ms_max": max(latencies) if latencies else None,
        "publisher_cpu_us_per_msg": result["cpu_s"] / sent * 1e6 if sent else None,
        "publisher_cpu_s": result["cpu_s"],
        "send_wall_s": result["wall_s"],
    }


def reconnect_test(broker: MosquittoProcess, trials: int = RECONNECT_TRIALS) -> dict:
    """Kill and restart the broker `trials` times under one publisher with default settings."""
    from edge.mqtt.config import parse_mqtt_config
    from edge.mqtt.publisher import MqttPublisher

    config = parse_mqtt_config({"url": f"mqtt://{HOST}:{broker.ports[0]}"})
    publisher = MqttPublisher(config, "reconnect", "bench")
    publisher.start()
    reconnect_s, gap_s = [], []
    try:
        for _ in range(trials):
            _wait(lambda: publisher.connected, 30)
            killed = time.monotonic()
            broker.kill()
            _wait(lambda: not publisher.connected, 30)
            broker.start()
            listening = time.monotonic()
            _wait(lambda: publisher.connected, 60)
            back = time.monotonic()
            reconnect_s.append(back - listening)
            gap_s.append(back - killed)
    finally:
        publisher.stop()
    return {
        "trials": trials,
        "reconnect_s_median": statistics.median(reconnect_s),
        "gap_s_median": statistics.median(gap_s),
        "reconnect_s": reconnect_s,
        "gap_s": gap_s,
        "backoff_s": [config.reconnect_min_s, config.reconnect_max_s],
    }


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise UsageError(f"benchmark step did not finish within {timeout} s")
        time.sleep(0.005)


def _report(load: dict, reconnect: dict) -> str:
    return "\n".join([
        f"MQTT load: {load['devices']} devices × {load['rate_hz']:g} Hz × {load['seconds']:g} s, "
        f"QoS {EVENT_QOS}, loopback mosquitto",
        f"  delivered/sent   {load['delivered']}/{load['sent']} ({load['delivered_ratio']:.2%}), "
        f"{load['duplicates']} duplicates, {load['dropped']} dropped",
        f"  latency p50/p99  {load['latency_ms_p50']:.2f} / {load['latency_ms_p99']:.2f} ms "
        f"(max {load['latency_ms_max']:.1f} ms)",
        f"  publisher CPU    {load['publisher_cpu_us_per_msg']:.0f} µs per message; sending took "
        f"{load['send_wall_s']:.1f} s for {load['seconds']:g} s of schedule"
        + (" (fell behind: CPU-starved, latency includes queueing)"
           if load["send_wall_s"] > 1.1 * load["seconds"] else ""),
        f"reconnect after a broker restart ({reconnect['trials']} trials, backoff "
        f"{reconnect['backoff_s'][0]:g}..{reconnect['backoff_s'][1]:g} s)",
        f"  median {reconnect['reconnect_s_median']:.2f} s after the broker listens again; "
        f"gap since the kill {reconnect['gap_s_median']:.2f} s",
    ])  # fmt: skip


def run_mqtt_bench(args: argparse.Namespace) -> int:
    """Run both benchmarks; print the report, write JSON to `args.json` when given."""
    if args.devices < 1 or args.rate <= 0 or args.seconds <= 0:
        raise UsageError("--devices, --rate and --seconds must be positive")
    with tempfile.TemporaryDirectory(prefix="emoedge-mqtt-bench-") as folder:
        port = free_port()
        broker = MosquittoProcess(Path(folder), [port], [
            "persistence false", f"listener {port} {HOST}", "allow_anonymous true",
            "max_queued_messages 0", "max_inflight_messages 0",
        ])  # fmt: skip
        broker.start()
        try:
            load = load_test(broker, args.devices, args.rate, args.seconds)
            reconnect = reconnect_test(broker)
        finally:
            broker.stop()
    print(_report(load, reconnect))
    if args.json:
        Path(args.json).write_text(json.dumps({"load": load, "reconnect": reconnect}, indent=2))
    return 0


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=int, default=1, help="--mqtt: simulated devices")


BENCH = Command(
    help="benchmark MQTT publishing instead (edge.mqtt.bench)",
    configure=_configure,
    run=run_mqtt_bench,
)
