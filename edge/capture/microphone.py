"""Microphone sources: PyAudio in callback mode and audio files (wav/flac) for replay."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.audio.frontend import to_mono_float
from edge.capture import AudioChunk, ChunkSink, ReplayClock
from edge.core.errors import DataError, DeviceError

if TYPE_CHECKING:  # annotations only, so that the config can import the source registries
    from edge.core.config import MicConfig

log = logging.getLogger(__name__)


class PyAudioMicrophone:
    """A live microphone through PortAudio. Overflows are counted, never fatal."""

    def __init__(self, cfg: MicConfig) -> None:
        self.cfg = cfg
        self.sample_rate = cfg.sample_rate
        self.overflows = 0
        self.pa: Any = None
        self.stream: Any = None
        self._pyaudio: Any = None
        self._sink: ChunkSink = lambda chunk: None  # set by start()

    @property
    def finished(self) -> bool:
        return False

    def _device_index(self, pa: Any) -> int | None:
        wanted = self.cfg.device
        if wanted is None:
            return None
        inputs = {
            i: str(info.get("name", ""))
            for i in range(pa.get_device_count())
            if (info := pa.get_device_info_by_index(i)).get("maxInputChannels", 0) > 0
        }
        matches = [i for i, name in inputs.items() if wanted == i or str(wanted) in name]
        if not matches:
            listing = "; ".join(f"{i}: {name}" for i, name in inputs.items()) or "none"
            raise DeviceError(
                f"microphone.device: no input device {wanted!r}; input devices: {listing}"
            )
        return matches[0]

    def start(self, sink: ChunkSink) -> None:
        try:
            import pyaudio
        except ImportError as error:
            raise DeviceError(
                f"microphone source 'pyaudio' needs the pyaudio package ({error}); "
                "apt install portaudio19-dev, then pip install pyaudio"
            ) from None
        self._pyaudio, self._sink = pyaudio, sink
        self.pa = pyaudio.PyAudio()
        try:
            index = self._device_index(self.pa)
            self.stream = self.pa.open(
                format=pyaudio.paInt16,
                channels=1,
                rate=self.sample_rate,
                input=True,
                input_device_index=index,
                frames_per_buffer=self.cfg.chunk,
                stream_callback=self.callback,
            )
            self.stream.start_stream()
        except (OSError, ValueError) as error:
            self.stop()
            raise DeviceError(
                f"cannot open microphone {self.cfg.device!r} at {self.sample_rate} Hz ({error})"
            ) from None

    def callback(self, data: bytes, frames: int, time_info: Any, status: int) -> tuple[None, int]:
        """PortAudio's stream callback (its thread): the chunk, stamped on arrival, goes to the
        sink; an input overflow (samples were lost before this chunk) is counted, and capture
        goes on."""
        t = time.monotonic()
        if status & self._pyaudio.paInputOverflow:
            self.overflows += 1
        samples = np.frombuffer(data, dtype=np.int16).astype(np.float32) / 32768.0
        self._sink(AudioChunk(samples, t, self.sample_rate))
        return None, self._pyaudio.paContinue

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.stop_stream()
            self.stream.close()
            self.stream = None
        if self.pa is not None:
            self.pa.terminate()
            self.pa = None


def read_audio_file(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate of a wav/flac file; DataError when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"audio file not found: {path}")
    try:
        import soundfile
    except ImportError as error:
        raise DeviceError(f"audio files need the soundfile package ({error})") from None
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise DataError(f"cannot read audio file {path} ({error})") from None
    if len(data) == 0:
        raise DataError(f"audio file {path} holds no samples")
    return to_mono_float(data), int(rate)


class FileMicrophone:
    """An audio file replayed on the replay clock; sample n is due at origin + offset + n / sr.
    The file is read when the source is made, so a bad file fails before anything starts."""

    def __init__(self, cfg: MicConfig, clock: ReplayClock) -> None:
        self.cfg = cfg
        self.clock = clock
        self.overflows = 0
        self.samples, self.sample_rate = read_audio_file(cfg.path)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def start(self, sink: ChunkSink) -> None:
        self._thread = threading.Thread(target=self._run, args=(sink,), name="mic-file")
        self._thread.daemon = True
        self._thread.start()

    def _run(self, sink: ChunkSink) -> None:
        chunk, sr, n = self.cfg.chunk, self.sample_rate, len(self.samples)
        delivered = 0
        while not self._stop.is_set():
            pos = delivered % n
            if delivered >= n and not self.cfg.loop:
                break
            piece = self.samples[pos : min(pos + chunk, n)]
            delivered += len(piece)
            media_end = self.cfg.offset_s + delivered / sr
            self.clock.wait_until(media_end, self._stop.is_set)
            sink(AudioChunk(piece, self.clock.at(media_end), sr))
        self._done.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
