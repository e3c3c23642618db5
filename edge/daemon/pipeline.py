"""One inference cycle: frame → face → audio window → mask → model → smoothing → events.

Both modalities missing means state "absent" and no inference (see edge.mqtt.messages.STATES).
Everything the model is fed follows its manifest (face size and normalisation, audio rate,
window and features). The face detector runs every `detector.interval_s` and the box is
followed in between (edge.vision.track); audio features are computed only for the analysis
frames that are new since the last cycle (edge.audio.features).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edge.audio.features import SlidingFeatures
from edge.audio.frontend import is_voiced, resample, window_features
from edge.audio.ring import AudioRing
from edge.backends.base import Runner
from edge.capture import Frame
from edge.core.config import EventConfig, SmoothingConfig
from edge.core.fusion import FusionConfig, fuse, modality_predictions, top_label, used_mask
from edge.core.labels import LABELS
from edge.daemon.smoothing import Change, EventPolicy, Smoother
from edge.daemon.stats import Stats
from edge.daemon.voice_memory import VoiceMemory
from edge.mqtt.messages import EmotionEvent, EmotionState
from edge.vision.detect import Detection, FaceDetector
from edge.vision.track import FaceTracker


@dataclass(frozen=True)
class ModelInputs:
    """One sample of model input and what was found."""

    face: np.ndarray  # (1, size, size)
    audio: np.ndarray  # (frames, features)
    mask: np.ndarray  # (2,) = [face present, audio present]
    box: Detection | None


@dataclass(frozen=True)
class CycleResult:
    """The outcome of one cycle; `state`/`event` are set when something is to be published."""

    inputs: ModelInputs
    probs: np.ndarray | None
    smoothed: np.ndarray | None
    change: Change | None
    state: EmotionState | None
    event: EmotionEvent | None


class Pipeline:
    """Turns (frame, time) into model inputs, probabilities and the messages to publish."""

    def __init__(
        self,
        runner: Runner,
        detector: FaceDetector | None,
        ring: AudioRing | None,
        smoothing: SmoothingConfig,
        events: EventConfig,
        stats: Stats,
        fusion: FusionConfig | None = None,
        voice_memory: VoiceMemory | None = None,
    ) -> None:
        self.runner = runner
        self.voice_memory = voice_memory  # keeps an adapting voice's statistics (or None)
        self.stats = stats
        self._count_voice_statistics()
        self.fusion = fusion or FusionConfig()
        self.tracker = (
            FaceTracker(detector, runner.manifest.face, stats) if detector is not None else None
        )
        self.ring = ring
        self.audio_cfg = runner.manifest.audio
        self.face_cfg = runner.manifest.face
        self.model_id = runner.manifest.model_id
        same_rate = ring is not None and ring.sample_rate == self.audio_cfg.sample_rate
        whole_hops = self.audio_cfg.window_samples % self.audio_cfg.hop_length == 0
        mfcc = self.audio_cfg.features == "mfcc"  # Whisper's log-mel: each window whole
        self.sliding = (
            SlidingFeatures(self.audio_cfg) if same_rate and whole_hops and mfcc else None
        )
        self.smoother = Smoother(smoothing)
        self.policy = EventPolicy(events)
        self.seq = 0
        self._blank_face = np.zeros((1, self.face_cfg.size, self.face_cfg.size), np.float32)
        self._blank_audio = np.zeros(
            (self.audio_cfg.num_frames, self.audio_cfg.feature_dim), np.float32
        )

    def inputs(self, frame: Frame | None, t: float) -> ModelInputs:
        """Find the face in `frame` and take the audio window that ends at `t`."""
        box, face = None, None
        if frame is not None and self.tracker is not None:
            box, face = self.tracker.locate(frame.image, t)
        start = self.stats.clock()
        audio, voiced = self._blank_audio, False
        if self.sliding is not None and self.ring is not None:
            features, voiced = self.sliding.window(self.ring, t)
            audio = audio if features is None else features
        elif self.ring is not None:  # another rate than the model's: resample each window
            wave = self.ring.window(t, self.audio_cfg.window_s)
            wave = resample(wave, self.ring.sample_rate, self.audio_cfg.sample_rate)
            voiced = is_voiced(wave, self.audio_cfg)
            if voiced:
                audio = window_features(wave, self.audio_cfg)
        self.stats.record("features", self.stats.clock() - start)
        mask = used_mask(np.array([box is not None, voiced], dtype=np.float32), self.fusion)
        return ModelInputs(self._blank_face if face is None else face, audio, mask, box)

    def predict(self, inputs: ModelInputs) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Class probabilities (7,) by the fusion mode, or None when the modalities it uses
        are missing; and the model's output rows (3, 7), from which a state takes what each
        modality said (edge.core.fusion.modality_predictions, only when one is published)."""
        if not inputs.mask.any():
            return None, None
        rows = self.stats.timed(
            "inference", self.runner.outputs, inputs.face[None], inputs.audio[None],
            inputs.mask[None],
        )[0]  # fmt: skip
        return fuse(rows, inputs.mask, self.fusion), rows

    def set_fusion(self, fusion: FusionConfig) -> None:
        """Use another fusion mode or voice weight from the next cycle on."""
        self.fusion = fusion

    def set_threshold(
        self, threshold: float | None = None, hold_s: float | None = None
    ) -> tuple[float, float]:
        """Change the events' confidence threshold and/or hold time (None: keep) from the next
        cycle on; the threshold and hold time now in force."""
        if threshold is not None:
            self.policy.threshold = threshold
        if hold_s is not None:
            self.policy.hold_s = hold_s
        return self.policy.threshold, self.policy.hold_s

    def cycle(self, frame: Frame | None, t: float) -> CycleResult:
        """One full cycle at time `t` (monotonic) for `frame` (None without a camera)."""
        inputs = self.inputs(frame, t)
        probs, rows = self.predict(inputs)
        start = self.stats.clock()
        self._adapt_voice(inputs, t)
        if probs is None:
            self.smoother.reset()
            smoothed, label, confidence = None, None, 0.0
        else:
            smoothed = self.smoother.update(probs)
            best = int(np.argmax(smoothed))
            label, confidence = LABELS[best], float(smoothed[best])
        change = self.policy.update(label, confidence, t)
        state = event = None
        if change is not None or self.policy.heartbeat_due(t):
            state = self._state(inputs, smoothed, rows)
            self.policy.state_published(t)
        if change is not None:
            event = self._event(change, state)
        self.stats.record("smoothing", self.stats.clock() - start)
        self.stats.cycle()
        return CycleResult(inputs, probs, smoothed, change, state, event)

    def _adapt_voice(self, inputs: ModelInputs, t: float) -> None:
        """A voice that adapts hears this cycle's voiced window (edge.core.voice_norm); the
        stats' counter `voice_windows_heard` counts the windows this process took."""
        norm, state = self.runner.voice_norm, self.runner.voice_state
        voiced = norm is not None and state is not None and inputs.mask[1] > 0
        if voiced and norm.observe(state[0], t):
            self.stats.count("voice_windows_heard")
            self._count_voice_statistics()
            if self.voice_memory is not None:
                self.voice_memory.taken()

    def _count_voice_statistics(self) -> None:
        """The stats' counter `voice_statistics_windows`: the windows an adapting voice's
        statistics hold (restored from an earlier run, or heard; past the memory they fade)."""
        if self.runner.voice_norm is not None:
            self.stats.set_counter("voice_statistics_windows", round(self.runner.voice_norm.heard))

    def reset_voice(self) -> bool:
        """An adapting voice forgets what it heard (back to its prior, saved so); False for a
        model whose voice does not adapt."""
        norm = self.runner.voice_norm
        if norm is None:
            return False
        norm.reset()
        self._count_voice_statistics()
        if self.voice_memory is not None:
            self.voice_memory.save()
        return True

    def close(self) -> None:
        """Save what must outlive the process (an adapting voice's statistics)."""
        if self.voice_memory is not None:
            self.voice_memory.save()

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _state(
        self, inputs: ModelInputs, smoothed: np.ndarray | None, rows: np.ndarray | None
    ) -> EmotionState:
        """The state of this moment (edge.mqtt.messages.STATES): what is seen now, its smoothed
        probabilities, what each modality said (from the model's output `rows`), and the
        reported label while something is seen."""
        epoch_ms, seq = int(time.time() * 1000), self._next_seq()
        if smoothed is None or rows is None:
            return EmotionState.blank("absent", epoch_ms, seq, self.model_id, self.fusion.mode)
        label = self.policy.reported
        confidence = 0.0 if label is None else float(smoothed[LABELS.index(label)])
        return EmotionState(
            label=label,
            confidence=round(confidence, 4),
            probabilities={n: round(float(p), 4) for n, p in zip(LABELS, smoothed, strict=True)},
            face=bool(inputs.mask[0]),
            audio=bool(inputs.mask[1]),
            epoch_ms=epoch_ms,
            seq=seq,
            model_id=self.model_id,
            state="uncertain" if label is None else "present",
            by_modality={
                name: top_label(p) for name, p in modality_predictions(rows, inputs.mask).items()
            },
            fusion=self.fusion.mode,
        )

    def pause(self, t: float) -> tuple[EmotionState, EmotionEvent | None]:
        """The `paused` state and, when an emotion was reported, the event that ends it (to
        null, as when the person leaves); when inference resumes, smoothing and the events
        start afresh and the first cycle publishes its state."""
        self.smoother.reset()
        self.policy.republish()
        change = self.policy.interrupt(t)
        state = EmotionState.blank(
            "paused", int(time.time() * 1000), self._next_seq(), self.model_id, self.fusion.mode
        )
        return state, None if change is None else self._event(change, state)

    def _event(self, change: Change, state: EmotionState) -> EmotionEvent:
        """The event of `change`, published before `state`: it takes the state's number and
        the state the next one, so `seq` runs in the order subscribers receive them."""
        event = EmotionEvent(
            previous=change.previous,
            current=change.current,
            previous_duration_s=round(change.previous_duration_s, 3),
            confidence=state.confidence,
            epoch_ms=state.epoch_ms,
            seq=state.seq,
            model_id=self.model_id,
        )
        state.seq = self._next_seq()
        return event
