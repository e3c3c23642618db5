"""The daemon: capture threads, bounded queues, rate-limited inference, publishing, shutdown.

    camera thread ──► FrameQueue (bounded, drop-oldest) ──┐
    microphone ─────► AudioRing (time-keyed) ─────────────┼─► Pipeline.cycle at inference_hz
                                                          └─► Publisher (MQTT) + stats
The daemon talks to MQTT only through the `Publisher` it is given.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from edge.audio.ring import AudioRing
from edge.capture import Camera, Frame, Microphone
from edge.core.errors import BrokerError, EmoedgeError
from edge.core.fusion import FusionConfig
from edge.daemon.pipeline import CycleResult, Pipeline
from edge.daemon.sdnotify import Notifier
from edge.daemon.stats import Stats
from edge.mqtt.messages import CommandResult, EmotionEvent, EmotionState, Publisher

log = logging.getLogger("emoedge.daemon")


class FrameQueue:
    """A bounded frame buffer: a full queue drops its oldest frame and counts it."""

    def __init__(self, size: int) -> None:
        self._frames: deque[Frame] = deque(maxlen=size)
        self._cond = threading.Condition()
        self.dropped = 0
        self.skipped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if len(self._frames) == self._frames.maxlen:
                self.dropped += 1
            self._frames.append(frame)
            self._cond.notify_all()

    def take_latest(self, timeout: float) -> Frame | None:
        """The newest frame (older ones are skipped and counted), waiting up to `timeout`."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._frames), timeout):
                return None
            frame = self._frames.pop()
            self.skipped += len(self._frames)
            self._frames.clear()
            return frame


@dataclass
class Summary:
    """What a run did (printed by `emoedge demo`)."""

    cycles: int
    events: int
    states: int
    mean_latency_ms: float
    stats: dict[str, Any]


class Daemon:
    """Runs the capture → pipeline → publisher loop until stopped or the input ends."""

    def __init__(
        self,
        pipeline: Pipeline,
        publisher: Publisher,
        camera: Camera | None,
        microphone: Microphone | None,
        ring: AudioRing | None,
        *,
        inference_hz: float,
        frame_queue: int,
        max_audio_wait_s: float,
        stats_interval_s: float,
        notifier: Notifier | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.publisher = publisher
        self.camera = camera
        self.microphone = microphone
        self.ring = ring
        self.period = 1.0 / inference_hz
        self.frames = FrameQueue(frame_queue)
        self.max_audio_wait_s = max_audio_wait_s
        self.stats_interval_s = stats_interval_s
        self.notifier = notifier or Notifier({})
        self.stats: Stats = pipeline.stats
        self.stop_event = threading.Event()
        self._wake = threading.Event()  # set by stop() and by a rate change
        self._rate_changed = False
        self.paused = False
        self._paused_published = False
        self._camera_done = threading.Event()
        self._failure: EmoedgeError | None = None
        self._camera_thread: threading.Thread | None = None
        self._events = self._states = 0

    # -- commands from MQTT ---------------------------------------------------------------

    def handle_command(self, name: str, value: Any) -> CommandResult:
        """Apply a validated `set/<name>` command (pause, resume, rate, threshold, fusion,
        reset_voice)."""
        if name == "pause":
            self.paused = True
            self._wake.set()  # the loop publishes the `paused` state
            return CommandResult(name, True, "paused")
        if name == "resume":
            self.paused = False
            self._wake.set()
            return CommandResult(name, True, "resumed")
        if name == "rate":
            self.period = 1.0 / float(value["hz"])
            self._rate_changed = True  # the next cycle is at most one new period away
            self._wake.set()
            return CommandResult(name, True, f"inference at {value['hz']} Hz", value)
        if name == "threshold":
            confidence, hold_s = value.get("confidence"), value.get("hold_s")
            threshold, hold_s = self.pipeline.set_threshold(
                None if confidence is None else float(confidence),
                None if hold_s is None else float(hold_s),
            )
            return CommandResult(name, True, f"threshold {threshold}, hold {hold_s} s", value)
        if name == "fusion":
            current = self.pipeline.fusion
            fusion = FusionConfig(
                mode=value.get("mode", current.mode),
                voice_weight=float(value.get("voice_weight", current.voice_weight)),
            )
            self.pipeline.set_fusion(fusion)  # from the next cycle on
            return CommandResult(
                name, True, f"fusion {fusion.mode}, voice weight {fusion.voice_weight}", value
            )
        if name == "reset_voice":
            if not self.pipeline.reset_voice():
                return CommandResult(name, False, "this model's voice does not adapt", value)
            return CommandResult(name, True, "voice statistics back to the model's prior", value)
        return CommandResult(name, False, f"unknown command {name!r}")

    # -- running ----------------------------------------------------------------------------

    def run(self, max_seconds: float | None = None) -> Summary:
        """Start everything, loop until stop()/end of input/`max_seconds`, shut down cleanly."""
        started = time.monotonic()
        try:
            self._start_sources()
            self.publisher.set_command_handler(self.handle_command)
            self.publisher.start()
            self.notifier.ready("running")
            log.info("running at %.1f Hz", 1.0 / self.period)
            self._loop(started, max_seconds)
        finally:
            final = self._shutdown()
        if self._failure is not None:
            raise self._failure
        return Summary(
            self.stats.cycles, self._events, self._states, self.stats.mean_latency_ms(), final
        )

    def stop(self) -> None:
        """Ask the loop to end (signal handlers call this)."""
        self.stop_event.set()
        self._wake.set()

    def _start_sources(self) -> None:
        if self.microphone is not None and self.ring is not None:
            self.microphone.start(self.ring.write)
        if self.camera is not None:
            self.camera.open()
            self._camera_thread = threading.Thread(
                target=self._camera_loop, name="camera", daemon=True
            )
            self._camera_thread.start()

    def _camera_loop(self) -> None:
        assert self.camera is not None
        try:
            while not self.stop_event.is_set():
                frame = self.camera.read()
                if frame is None:
                    break
                self.frames.put(frame)
        except EmoedgeError as error:
            self._failure = error
            self.stop_event.set()
        finally:
            self._camera_done.set()

    def _input_finished(self) -> bool:
        if self.camera is not None:
            return self._camera_done.is_set()
        return self.microphone is not None and self.microphone.finished

    def _healthy(self) -> bool:
        """False (and the failure recorded) once the publisher cannot work any more: the
        loop ends, the watchdog is no longer fed and `run` raises, so systemd restarts us."""
        problem = self.publisher.problem()
        if problem is None:
            return True
        log.error("%s; exiting so that the service restarts", problem)
        self._failure = BrokerError(f"{problem}; restart the daemon")
        return False

    def _loop(self, started: float, max_seconds: float | None) -> None:
        next_cycle = next_stats = time.monotonic()
        next_stats += self.stats_interval_s
        while not self.stop_event.is_set() and self._healthy():
            self.notifier.watchdog()
            now = time.monotonic()
            if max_seconds is not None and now - started >= max_seconds:
                break
            if now >= next_stats:
                self._publish_stats()
                next_stats = now + self.stats_interval_s
            if self._rate_changed:
                self._rate_changed = False
                next_cycle = min(next_cycle, now + self.period)
            if self.paused:
                self._announce_pause()
                next_cycle = now + self.period
            if now < next_cycle:
                self._wake.wait(min(next_cycle - now, next_stats - now, 1.0))
                self._wake.clear()
                continue
            self._paused_published = False
            next_cycle = max(next_cycle + self.period, now)
            ran = self._one_cycle()
            if (not ran or self.camera is None) and self._input_finished():
                log.info("end of input")
                break

    def _announce_pause(self) -> None:
        """Publish the `paused` state, and the event that ends the reported emotion, once per
        pause (from the loop, so no cycle's messages can overtake them)."""
        if not self._paused_published:
            self._paused_published = True
            state, event = self.pipeline.pause(time.monotonic())
            self._publish(event, state)

    def _one_cycle(self) -> bool:
        """One inference cycle; False when no frame came (camera stalled or finished)."""
        frame = None
        if self.camera is not None:
            frame = self.frames.take_latest(timeout=min(self.period, 0.5))
            if frame is None:
                return False
            self.stats.record("capture", max(time.monotonic() - frame.t, 0.0))
        t = frame.t if frame is not None else time.monotonic()
        if self.ring is not None and self.max_audio_wait_s > 0:
            self.ring.wait_until(t, self.max_audio_wait_s)
        self.cycle(frame, t)
        return True

    def cycle(self, frame: Frame | None, t: float) -> CycleResult:
        """One pipeline cycle on `frame` at `t` and the publishing of what it produced (the
        loop calls it; the pipeline benchmark drives it directly)."""
        result = self.pipeline.cycle(frame, t)
        self._publish(result.event, result.state)
        return result

    def _publish(self, event: EmotionEvent | None, state: EmotionState | None) -> None:
        """The event first, then the state it led to."""
        if state is None and event is None:
            return
        start = self.stats.clock()
        if event is not None:
            self.publisher.publish_event(event)
            self._events += 1
            log.info("emotion: %s → %s", event.previous, event.current)
        if state is not None:
            self.publisher.publish_state(state)
            self._states += 1
        self.stats.record("publish", self.stats.clock() - start)

    def _counters(self) -> None:
        self.stats.set_counter("frames_dropped", self.frames.dropped)
        self.stats.set_counter("frames_skipped", self.frames.skipped)
        if self.microphone is not None:
            self.stats.set_counter("audio_overflows", self.microphone.overflows)

    def _publish_stats(self) -> None:
        self._counters()
        snapshot = self.stats.snapshot()
        log.info("stats: %s", snapshot)
        self.publisher.publish_stats(snapshot)

    def _shutdown(self) -> dict[str, Any]:
        """Stop capture, publish offline (the publisher's stop), flush, tell systemd; the
        final statistics."""
        self.notifier.stopping()
        self.stop_event.set()
        if self._camera_thread is not None:
            self._camera_thread.join(timeout=5)
        if self.camera is not None:
            self.camera.close()
        if self.microphone is not None:
            self.microphone.stop()
        self.pipeline.close()
        self._counters()
        final = self.stats.snapshot()
        log.info("final stats: %s", final)
        self.publisher.stop()
        self.notifier.close()
        return final
