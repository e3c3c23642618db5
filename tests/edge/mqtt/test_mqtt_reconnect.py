"""The broker is killed and restarted mid-stream: the publisher reconnects, says `online` again
and delivers every queued QoS 1 event in order; beyond the queue bound the oldest are dropped
and counted. The subscriber holds a persistent session on a broker that persists it, so what
it receives is exactly what the publisher delivered."""

from __future__ import annotations

import json
import logging
import re
import time

from edge.core.errors import BrokerError
from edge.mqtt.messages import Topics
from tests.fixtures_mqtt import MessageLog, sample_event, wait_for

TOPICS = Topics("emoedge", "flaky")
QUICK = {"max_rate_per_topic": 1000, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}


def _seqs(log: MessageLog) -> list[int]:
    """Event sequence numbers in order of first arrival (QoS 1 may deliver a duplicate)."""
    seen: dict[int, None] = {}
    for payload in log.on(TOPICS.events):
        seen.setdefault(json.loads(payload)["seq"], None)
    return list(seen)


def _outage(broker, publisher, log, before: int, during: int, restart: bool = True) -> None:
    """`before` events live, kill the broker, `during` events while it is away, restart it
    (unless not `restart`)."""
    for seq in range(before):
        publisher.publish_event(sample_event(seq))
    wait_for(lambda: len(_seqs(log)) == before, what="events before the outage")
    broker.kill()
    wait_for(lambda: not publisher.connected, what="the publisher to notice the outage")
    for seq in range(before, before + during):
        publisher.publish_event(sample_event(seq))
    if restart:
        broker.start()


def test_restart_mid_stream_loses_and_reorders_nothing_within_the_bound(
    private_broker, make_publisher
) -> None:
    log = MessageLog(private_broker, "emoedge/flaky/#", session="reconnect-subscriber")
    publisher = make_publisher(private_broker, "flaky", queue_size=100, **QUICK)
    wait_for(lambda: log.on(TOPICS.availability) == [b"online"], what="online")

    _outage(private_broker, publisher, log, before=20, during=60)

    wait_for(lambda: len(_seqs(log)) >= 80, what="the queued events")
    assert _seqs(log) == list(range(80))
    counters = publisher.counters()
    assert counters["dropped"] == 0 and counters["reconnects"] == 1 and counters["connected"]
    wait_for(lambda: log.on(TOPICS.availability)[-1:] == [b"online"], what="online again")
    assert len(log.on(TOPICS.availability)) >= 2  # announced again after the restart


def test_beyond_the_bound_the_oldest_are_dropped_and_counted(
    private_broker, make_publisher
) -> None:
    log = MessageLog(private_broker, "emoedge/flaky/events", session="drop-subscriber")
    publisher = make_publisher(private_broker, "flaky", queue_size=5, **QUICK)

    _outage(private_broker, publisher, log, before=3, during=12)

    wait_for(lambda: 14 in _seqs(log), what="the newest event")
    assert _seqs(log) == [0, 1, 2, *range(10, 15)]  # 3..9 were the oldest in a full queue
    assert publisher.counters()["dropped"] == 7


def test_state_after_a_restart_is_the_newest(private_broker, make_publisher) -> None:
    from tests.fixtures_mqtt import sample_state

    publisher = make_publisher(private_broker, "flaky", **QUICK)
    publisher.publish_state(sample_state(1, "happy"))
    wait_for(lambda: publisher.counters()["sent"] >= 1, what="first state")
    private_broker.kill()
    wait_for(lambda: not publisher.connected, what="outage noticed")
    for seq, label in enumerate(["sad", "angry", "fear"], start=2):
        publisher.publish_state(sample_state(seq, label))
    private_broker.start()
    wait_for(lambda: publisher.connected, what="reconnected")
    late = MessageLog(private_broker, TOPICS.state)
    try:
        wait_for(lambda: late.messages and json.loads(late.messages[-1][1])["seq"] == 4,
                 what="the newest retained state")  # fmt: skip
        assert json.loads(late.messages[-1][1])["label"] == "fear"
    finally:
        late.close()


def _gave_up(publisher) -> BrokerError | None:
    try:
        publisher.publish_event(sample_event(1))
    except BrokerError as error:
        return error
    return None


def test_two_daemons_with_one_device_id_stop_fighting(mqtt_broker, make_publisher) -> None:
    """Same device id, same client id: the broker closes the older connection whenever the
    other one connects. Instead of pushing each other off forever, one gives up with an error
    that names the cause; the other keeps the connection."""
    twins = [make_publisher(mqtt_broker, "twin", **QUICK) for _ in range(2)]
    error = wait_for(lambda: _gave_up(twins[0]) or _gave_up(twins[1]), what="a twin to give up")
    assert "another client is using the client id 'emoedge-twin'" in str(error)
    assert "second daemon with device_id 'twin'" in str(error)
    survivor = twins[1] if _gave_up(twins[0]) else twins[0]
    assert _gave_up(survivor) is None
    time.sleep(3 * QUICK["reconnect_max_s"])  # room for a reconnect that must not happen
    assert survivor.connected and not any(t.connected for t in twins if t is not survivor)


def test_default_backoff_retries_at_least_every_second(private_broker, make_publisher, caplog):
    """With the default back-off a long outage still ends in a reconnect within about a second
    of the broker's return: no wait between attempts is longer than 1 s. Nothing is lost."""
    caplog.set_level(logging.WARNING, logger="emoedge.mqtt")
    log = MessageLog(private_broker, "emoedge/flaky/#", session="backoff-subscriber")
    publisher = make_publisher(private_broker, "flaky", max_rate_per_topic=1000)
    wait_for(lambda: log.on(TOPICS.availability) == [b"online"], what="online")

    def waits() -> list[float]:
        found = (re.search(r"next attempt in ([\d.]+) s", r.getMessage()) for r in caplog.records)
        return [float(m.group(1)) for m in found if m]

    _outage(private_broker, publisher, log, before=5, during=5, restart=False)
    wait_for(lambda: len(waits()) >= 6, what="six failed attempts")  # 0.5 s, then 1 s each
    private_broker.start()
    wait_for(lambda: publisher.connected, what="the reconnect")
    wait_for(lambda: len(_seqs(log)) >= 10, what="the queued events")
    assert _seqs(log) == list(range(10))
    assert max(waits()) <= 1.0, waits()
