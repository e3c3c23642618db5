"""Real PyAudio (PortAudio → ALSA) capturing from an ALSA `file` PCM that plays a known wav.

The PCM is defined in a temporary ~/.asoundrc; the capture runs in a subprocess whose HOME
points there, so ALSA reads that configuration and nothing of the machine's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.fixtures_daemon import REPO

RATE = 16000
CAPTURE = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from edge.capture.microphone import PyAudioMicrophone
    from edge.core.config import MicConfig
    from edge.core.errors import DeviceError

    chunks = []
    mic = PyAudioMicrophone(MicConfig(device=sys.argv[1], sample_rate=16000, chunk=512))
    try:
        mic.start(chunks.append)
    except DeviceError as error:
        print(json.dumps({"error": str(error)}))
        sys.exit(0)
    deadline = time.monotonic() + 20
    while sum(len(c.samples) for c in chunks) < int(sys.argv[2]) and time.monotonic() < deadline:
        time.sleep(0.01)
    mic.stop()
    np.save(sys.argv[3], np.concatenate([c.samples for c in chunks]))
    times = [c.t_end for c in chunks]
    rates = sorted({c.sample_rate for c in chunks})
    print(json.dumps({"chunks": len(chunks), "monotonic": times == sorted(times),
                      "overflows": mic.overflows, "rates": rates}))
    """
)


OVERFLOW = textwrap.dedent(
    """
    import json, time
    import pyaudio
    from edge.capture.microphone import PyAudioMicrophone
    from edge.core.config import MicConfig

    def wait_for(n):
        deadline = time.monotonic() + 20
        while len(chunks) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    chunks = []
    mic = PyAudioMicrophone(MicConfig(device="emoedge_test", sample_rate=16000, chunk=512))
    mic.start(chunks.append)
    wait_for(2)
    lost = bytes(2 * 512)  # what PortAudio hands over after an overrun: a chunk + the flag
    answers = [
        mic.callback(lost, 512, {}, pyaudio.paInputOverflow),
        mic.callback(lost, 512, {}, pyaudio.paInputOverflow | pyaudio.paInputUnderflow),
        mic.callback(lost, 512, {}, 0),
    ]
    after = len(chunks)
    wait_for(after + 10)
    mic.stop()
    print(json.dumps({"overflows": mic.overflows, "more_chunks": len(chunks) - after,
                      "all_continue": all(a == (None, pyaudio.paContinue) for a in answers)}))
    """
)


@pytest.fixture
def alsa_home(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A HOME whose .asoundrc defines `emoedge_test`: capture reads a known wav's samples."""
    pytest.importorskip("pyaudio", reason="pyaudio not installed (needs portaudio19-dev)")
    t = np.arange(2 * RATE) / RATE
    wave = (0.5 * np.sin(2 * np.pi * 440 * t) * np.linspace(0, 1, len(t))).astype(np.float32)
    soundfile.write(tmp_path / "known.wav", wave, RATE, subtype="PCM_16")
    pcm16, _ = soundfile.read(tmp_path / "known.wav", dtype="int16")
    pcm16.astype("<i2").tofile(tmp_path / "known.raw")  # the file PCM's infile is raw S16_LE
    (tmp_path / ".asoundrc").write_text(
        textwrap.dedent(
            f"""
            pcm.emoedge_test {{
                type file
                slave.pcm "null"
                file "/dev/null"
                infile "{tmp_path / "known.raw"}"
                format "raw"
            }}
            """
        )
    )
    return tmp_path, pcm16.astype(np.float32) / 32768.0


def run_with_alsa_home(home: Path, script: str, *args: str) -> dict:
    """Run `script` in a fresh interpreter whose HOME (and so .asoundrc) is `home`; the JSON
    object it prints last."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "HOME": str(home)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def capture(home: Path, device: str, samples: int) -> dict:
    out = home / "captured.npy"
    result = run_with_alsa_home(home, CAPTURE, device, str(samples), str(out))
    if out.exists():
        result["samples"] = np.load(out)
    return result


def test_pyaudio_captures_the_known_wav(alsa_home: tuple[Path, np.ndarray]) -> None:
    home, known = alsa_home
    result = capture(home, "emoedge_test", len(known))
    assert "error" not in result, result
    captured = result["samples"]
    assert len(captured) >= len(known)
    np.testing.assert_allclose(captured[: len(known)], known, atol=1e-6)
    assert result["monotonic"] and result["rates"] == [RATE] and result["chunks"] > 1
    assert result["overflows"] >= 0


def test_missing_input_device_names_the_available_ones(alsa_home: tuple[Path, np.ndarray]) -> None:
    home, _ = alsa_home
    result = capture(home, "no-such-microphone", 1)
    assert "no input device 'no-such-microphone'" in result["error"]
    assert "emoedge_test" in result["error"]


def test_an_input_overflow_is_counted_and_capture_goes_on(
    alsa_home: tuple[Path, np.ndarray],
) -> None:
    """The real PyAudio stream runs on the ALSA file PCM; PortAudio's overflow status is
    delivered through the source's real stream callback with PyAudio's real `paInputOverflow`
    flag. A real overrun cannot be provoked here: the file PCM sits on the `null` PCM, which
    has no clock, so capture goes as fast as the reader takes it and never overruns (blocking
    the callback for 1.5 s still gave none), and the machine has no sound card (no snd-aloop or
    snd-dummy) to overrun instead."""
    result = run_with_alsa_home(alsa_home[0], OVERFLOW)
    assert result["all_continue"]  # the stream is told to go on after each one
    assert result["overflows"] == 2  # one per flagged chunk; the file PCM never overruns
    assert result["more_chunks"] >= 10  # and the real stream kept delivering
