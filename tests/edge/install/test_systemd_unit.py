"""The shipped systemd unit: systemd itself must accept it silently and rate it hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
UNIT = REPO / "edge" / "systemd" / "emoedge.service"
JETSON_DROPIN = REPO / "edge" / "systemd" / "jetson-gpu.conf"
EXEC_START = "/opt/emoedge/venv/bin/emoedge"
MAX_EXPOSURE = 2.0

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (apt-get install systemd; `make test` does)",
)


def entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment in a unit file, in order (keys may repeat)."""
    section, out = "", []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def staged_unit(tmp_path: Path, with_jetson: bool) -> Path:
    """A copy of the unit whose ExecStart names an executable that exists on this machine."""
    text = UNIT.read_text()
    assert EXEC_START in text
    unit = tmp_path / "emoedge.service"
    unit.write_text(text.replace(EXEC_START, sys.executable))
    if with_jetson:
        dropins = tmp_path / "emoedge.service.d"
        dropins.mkdir()
        shutil.copy(JETSON_DROPIN, dropins / JETSON_DROPIN.name)
    return unit


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("with_jetson", [False, True], ids=["unit", "unit+jetson-dropin"])
def test_verify_prints_nothing(tmp_path: Path, with_jetson: bool) -> None:
    # verify exits 0 on unknown keys and bad values and only warns: any output is a failure.
    result = analyze("verify", str(staged_unit(tmp_path, with_jetson)))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_does_report_a_bad_key(tmp_path: Path) -> None:
    """The silence above means something: the same call does speak up about a broken unit."""
    unit = staged_unit(tmp_path, with_jetson=False)
    unit.write_text(unit.read_text().replace("WatchdogSec=", "WatchDogSec="))
    result = analyze("verify", str(unit))
    assert "WatchDogSec" in result.stdout + result.stderr


@pytest.mark.parametrize("with_jetson", [False, True], ids=["unit", "unit+jetson-dropin"])
def test_security_exposure_is_low(tmp_path: Path, with_jetson: bool) -> None:
    result = analyze("security", "--offline=yes", str(staged_unit(tmp_path, with_jetson)))
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_unit_declares_the_service_contract() -> None:
    """What the daemon and the installer rely on, beyond what the exposure score measures."""
    found = entries(UNIT)
    settings = {(section, key): value for section, key, value in found}
    assert settings["Service", "Type"] == "notify"
    assert settings["Service", "ExecStart"] == (
        f"{EXEC_START} run --config /etc/emoedge/config.toml"
    )
    assert int(settings["Service", "WatchdogSec"]) > 0
    assert settings["Service", "Restart"] == "on-failure"
    # Start limits only take effect in [Unit]; in [Service] systemd ignores them.
    assert ("Unit", "StartLimitIntervalSec") in settings
    assert ("Unit", "StartLimitBurst") in settings
    assert settings["Service", "SupplementaryGroups"].split() == ["video", "audio"]
    assert settings["Service", "DevicePolicy"] == "closed"
    allowed = {value.split()[0] for section, key, value in found if key == "DeviceAllow"}
    assert {"char-video4linux", "char-alsa", "char-media", "char-dma_heap"} <= allowed
    assert settings["Service", "CapabilityBoundingSet"] == ""
    assert settings["Service", "StateDirectory"] == "emoedge"
    assert settings["Service", "ConfigurationDirectory"] == "emoedge"
    assert settings["Install", "WantedBy"] == "multi-user.target"


def test_jetson_dropin_only_widens_devices_and_gpu_needs() -> None:
    keys = {key for _, key, _ in entries(JETSON_DROPIN)}
    allowed = {"DeviceAllow", "BindPaths", "Environment", "TimeoutStartSec"}
    assert keys <= allowed | {"MemoryDenyWriteExecute"}
    assert "/dev/nvmap" in JETSON_DROPIN.read_text()
