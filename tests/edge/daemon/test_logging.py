"""Logging under systemd: journald's stream gets `<N>`-prefixed lines without timestamps."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

CHILD = """
import logging
from edge.cli import configure_logging
configure_logging(verbose=1)
log = logging.getLogger("emoedge.test")
log.debug("a debug line")
log.info("an info line")
log.warning("a warning line")
log.error("an error line")
log.critical("a critical line")
try:
    raise ValueError("boom")
except ValueError:
    log.exception("it failed")
"""


def run_child(journal_stream: str | None, stderr: socket.socket | int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if journal_stream is not None:
        env["JOURNAL_STREAM"] = journal_stream
    subprocess.run([sys.executable, "-c", CHILD], env=env, stderr=stderr, check=True, timeout=60)


def read_all(sock: socket.socket) -> str:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def journal_run(stream_id: str | None = None) -> list[str]:
    """The child's stderr lines when stderr is a stream socket, as systemd connects journald."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        stat = os.fstat(theirs.fileno())
        run_child(stream_id or f"{stat.st_dev}:{stat.st_ino}", theirs.fileno())
        theirs.close()
        return read_all(ours).splitlines()


def test_journal_stream_gets_priorities_and_no_timestamps() -> None:
    lines = journal_run()
    assert lines[:5] == [
        "<7>emoedge.test: a debug line",
        "<6>emoedge.test: an info line",
        "<4>emoedge.test: a warning line",
        "<3>emoedge.test: an error line",
        "<2>emoedge.test: a critical line",
    ]
    # A traceback is one record: every line keeps the error priority, none falls back to info.
    traceback = lines[5:]
    assert traceback[0] == "<3>emoedge.test: it failed"
    assert any("ValueError: boom" in line for line in traceback)
    assert all(line.startswith("<3>") for line in traceback)


@pytest.mark.parametrize("stream_id", ["1:2", "garbage"], ids=["other-stream", "malformed"])
def test_inherited_variable_for_another_stream_keeps_timestamps(stream_id: str) -> None:
    lines = journal_run(stream_id)
    assert not any(line.startswith("<") for line in lines)
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO emoedge.test: an info line", lines[1]
    )


def test_terminal_output_has_timestamps(tmp_path) -> None:
    with open(tmp_path / "stderr", "w") as stderr:
        run_child(None, stderr.fileno())
    lines = (tmp_path / "stderr").read_text().splitlines()
    assert re.match(r"\d{4}-\d\d-\d\d .* WARNING emoedge.test: a warning line", lines[2])
