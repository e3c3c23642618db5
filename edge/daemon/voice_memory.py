"""Keeping an adapting voice's statistics (edge.core.voice_norm) across restarts: a daemon
restarted by systemd, an update or a power cut continues from the speech it had heard instead
of from the training corpora's prior. The statistics are saved every `save_every` windows
taken, at `set/reset_voice` and at shutdown, in one small file (two vectors of the voice's
width and a count: no audio, nothing that could be played back)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from edge.core.voice_norm import VoiceNorm

log = logging.getLogger(__name__)

STATE_FILE = "voice-statistics.npz"
SAVE_EVERY = 20  # windows taken: about a minute of speech at one window per 3 s


def statistics_path(setting: str, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where model.voice_statistics says to keep them: None for "off", and for "auto" outside
    systemd (its StateDirectory= sets $STATE_DIRECTORY, e.g. /var/lib/emoedge)."""
    if setting == "off":
        return None
    if setting == "auto":
        state = environ.get("STATE_DIRECTORY", "").split(":")[0]
        return Path(state) / STATE_FILE if state else None
    return Path(setting).expanduser()


class VoiceMemory:
    """The file `path` behind a VoiceNorm: read once at start, written as it learns. A file that
    cannot be read or belongs to another model is reported and left to be overwritten; a
    failed write is reported and the daemon runs on (the statistics stay in memory)."""

    def __init__(self, norm: VoiceNorm, path: Path, save_every: int = SAVE_EVERY):
        self.norm = norm
        self.path = path
        self.save_every = save_every
        self._unsaved = 0
        self._write_failed = False

    def load(self) -> float:
        """Continue from the saved statistics, if any; the windows they count (0 when none)."""
        if not self.path.exists():
            log.info("voice statistics: none saved yet at %s; starting from the prior", self.path)
            return 0.0
        try:
            heard = self.norm.restore(self.path)
        except (OSError, ValueError) as error:
            log.warning("voice statistics at %s not used (%s); starting from the prior",
                        self.path, error)  # fmt: skip
            return 0.0
        log.info("voice statistics restored from %s (%.0f windows heard)", self.path, heard)
        return heard

    def taken(self) -> None:
        """One more window was taken; saved every `save_every`."""
        self._unsaved += 1
        if self._unsaved >= self.save_every:
            self.save()

    def save(self) -> None:
        """Write the statistics now (at shutdown, after a reset)."""
        self._unsaved = 0
        try:
            self.norm.save(self.path)
        except OSError as error:
            if not self._write_failed:  # once, not every minute
                log.warning("voice statistics cannot be saved to %s (%s); they are kept in "
                            "memory only", self.path, error)  # fmt: skip
            self._write_failed = True
            return
        if self._write_failed:
            log.info("voice statistics saved to %s again", self.path)
        self._write_failed = False
