"""`emoedge install` / `uninstall` into a staging root: exact files, idempotence, undo."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import main
from edge.install.service import requirement

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "edge" / "templates" / "config.toml"
UNIT = "etc/systemd/system/emoedge.service"
WANTS = "etc/systemd/system/multi-user.target.wants/emoedge.service"
DROPIN = "etc/systemd/system/emoedge.service.d/jetson-gpu.conf"
CONFIG = "etc/emoedge/config.toml"
MANIFEST = "opt/emoedge/installed.json"


@pytest.fixture
def template() -> Path:
    """The daemon's commented config template that install copies; skips until it exists."""
    if not TEMPLATE.is_file():
        pytest.skip(f"{TEMPLATE.relative_to(REPO)} (the daemon's config template) is missing")
    return TEMPLATE


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ROOT: files by content hash and mode, links by target, directories."""
    tree = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            tree[key] = f"link -> {path.readlink()}"
        elif path.is_dir():
            tree[key] = "dir"
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            tree[key] = f"{oct(path.stat().st_mode & 0o777)} {digest} {path.stat().st_mtime_ns}"
    return tree


def emoedge(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def install(capsys: pytest.CaptureFixture[str], root: Path, *extra: str) -> tuple[int, str]:
    return emoedge(capsys, "install", "--root", str(root), "--no-venv", *extra)


def files_only(tree: dict[str, str]) -> set[str]:
    return {path for path, kind in tree.items() if kind != "dir"}


@pytest.mark.parametrize("platform", ["generic", "raspberry-pi", "jetson"])
@pytest.mark.usefixtures("template")
def test_install_produces_exactly_the_expected_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], platform: str
) -> None:
    code, out = install(capsys, tmp_path, "--platform", platform)
    assert code == 0, out
    expected = {CONFIG, UNIT, WANTS, MANIFEST} | ({DROPIN} if platform == "jetson" else set())
    assert files_only(snapshot(tmp_path)) == expected
    assert (tmp_path / UNIT).read_bytes() == (
        REPO / "edge" / "systemd" / "emoedge.service"
    ).read_bytes()
    assert (tmp_path / CONFIG).read_bytes() == TEMPLATE.read_bytes()
    # Enabled the way `systemctl enable` links it, pointing at the unit's path on the device.
    assert str((tmp_path / WANTS).readlink()) == "/etc/systemd/system/emoedge.service"
    if platform == "jetson":
        assert (tmp_path / DROPIN).read_bytes() == (
            REPO / "edge/systemd/jetson-gpu.conf"
        ).read_bytes()
    record = json.loads((tmp_path / MANIFEST).read_text())
    assert record["platform"] == platform
    assert {f"/{p}" for p in expected - {WANTS, MANIFEST}} == set(record["created"])
    for path in expected - {WANTS}:
        assert f"/{path}" in out


@pytest.mark.usefixtures("template")
def test_second_install_changes_nothing_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(capsys, tmp_path, "--platform", "jetson")
    before = snapshot(tmp_path)
    code, out = install(capsys, tmp_path, "--platform", "jetson")
    assert code == 0
    assert snapshot(tmp_path) == before
    assert "nothing to do" in out
    assert "create" not in out


@pytest.mark.usefixtures("template")
def test_dry_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    code, out = install(capsys, root, "--platform", "jetson", "--dry-run")
    assert code == 0
    assert not root.exists()
    assert "would create" in out and "/etc/systemd/system/emoedge.service" in out
    install(capsys, root, "--platform", "generic")
    before = snapshot(root)
    code, out = emoedge(capsys, "uninstall", "--root", str(root), "--dry-run")
    assert code == 0
    assert snapshot(root) == before
    assert "would remove" in out


@pytest.mark.usefixtures("template")
def test_existing_config_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / CONFIG
    config.parent.mkdir(parents=True)
    config.write_text('device_id = "kitchen"\n')
    code, out = install(capsys, tmp_path, "--platform", "generic")
    assert code == 0
    assert config.read_text() == 'device_id = "kitchen"\n'
    assert "keep" in out
    assert f"/{CONFIG}" not in json.loads((tmp_path / MANIFEST).read_text())["created"]


@pytest.mark.usefixtures("template")
def test_uninstall_removes_what_install_added_and_keeps_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A root that already has things of its own, which must survive.
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/hostname").write_text("pi\n")
    (tmp_path / "etc/systemd/system/other.service").write_text("[Service]\n")
    (tmp_path / "opt").mkdir()
    before = snapshot(tmp_path)

    install(capsys, tmp_path, "--platform", "jetson")
    (tmp_path / CONFIG).write_text('device_id = "hall"\n')  # the user edits it
    code, out = emoedge(capsys, "uninstall", "--root", str(tmp_path))
    assert code == 0, out
    after = snapshot(tmp_path)
    assert (tmp_path / CONFIG).read_text() == 'device_id = "hall"\n'
    assert set(after) - set(before) == {"etc/emoedge", CONFIG}
    assert {k: v for k, v in after.items() if k in before} == before

    code, out = emoedge(capsys, "uninstall", "--root", str(tmp_path))
    assert code == 0 and "nothing to do" in out
    assert snapshot(tmp_path) == after


@pytest.mark.usefixtures("template")
def test_purge_also_removes_config_and_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(capsys, tmp_path, "--platform", "raspberry-pi")
    (tmp_path / "etc/emoedge/environment").write_text("MQTT_PASSWORD=x\n")
    (tmp_path / "var/lib/private/emoedge/models").mkdir(parents=True)
    code, out = emoedge(capsys, "uninstall", "--root", str(tmp_path), "--purge")
    assert code == 0, out
    assert snapshot(tmp_path) == {"var": "dir", "var/lib": "dir", "var/lib/private": "dir"}


@pytest.mark.usefixtures("template")
@pytest.mark.parametrize("platform", ["generic", "jetson"])
def test_drop_ins_stay_without_purge_and_go_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], platform: str
) -> None:
    """`systemctl edit emoedge` (what the unit tells users to do) writes override.conf."""
    install(capsys, tmp_path, "--platform", platform)
    override = tmp_path / "etc/systemd/system/emoedge.service.d/override.conf"
    override.parent.mkdir(exist_ok=True)
    override.write_text("[Service]\nEnvironment=X=1\n")
    code, out = emoedge(capsys, "uninstall", "--root", str(tmp_path))
    assert code == 0 and override.exists() and "override.conf" in out and "--purge" in out
    assert not (tmp_path / DROPIN).exists()  # the jetson drop-in is ours: removed
    install(capsys, tmp_path, "--platform", platform)
    code, out = emoedge(capsys, "uninstall", "--root", str(tmp_path), "--purge")
    assert code == 0 and "emoedge.service.d" in out
    assert not override.parent.exists()
    # the folders above existed (they held the override) when the second install ran
    assert set(snapshot(tmp_path)) == {"etc", "etc/systemd", "etc/systemd/system"}


@pytest.mark.usefixtures("template")
def test_changed_unit_is_restored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install(capsys, tmp_path, "--platform", "generic")
    (tmp_path / UNIT).write_text("[Service]\nExecStart=/bin/false\n")
    code, out = install(capsys, tmp_path, "--platform", "generic")
    assert code == 0
    assert "update" in out
    assert (tmp_path / UNIT).read_bytes() == (
        REPO / "edge" / "systemd" / "emoedge.service"
    ).read_bytes()


def test_corrupt_install_record_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / MANIFEST).parent.mkdir(parents=True)
    (tmp_path / MANIFEST).write_text("{not json")
    code, out = emoedge(capsys, "uninstall", "--root", str(tmp_path))
    assert code == 3
    assert "emoedge uninstall: error:" in out and "installed.json" in out
    assert "Traceback" not in out


def from_checkout(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python3 -m edge.install` from this checkout with no site-packages at all (-S)."""
    return subprocess.run(
        [sys.executable, "-S", "-m", "edge.install", "--root", str(root), *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.usefixtures("template")
def test_runs_from_a_checkout_with_the_standard_library_only(tmp_path: Path) -> None:
    """`sudo python3 -m edge.install` on a fresh board, before any venv exists."""
    result = from_checkout(tmp_path, "--no-venv", "--platform", "generic")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / UNIT).is_file() and (tmp_path / CONFIG).is_file()
    plan = from_checkout(tmp_path, "--platform", "raspberry-pi", "--dry-run")
    assert "python3 -m venv --system-site-packages" in plan.stdout
    assert f"pip install {REPO}[edge] numpy<2" in plan.stdout


@pytest.mark.parametrize(
    ("source", "extra", "expected"),
    [
        ("emoedge==0.1.0", "edge", "emoedge[edge]==0.1.0"),
        ("emoedge", "none", "emoedge"),
        ("emoedge[edge]>=0.1", "workstation", "emoedge[edge]>=0.1"),
    ],
)
def test_requirement_places_the_extra(source: str, extra: str, expected: str) -> None:
    assert requirement(source, extra) == expected


def test_requirement_of_a_checkout_is_its_absolute_path() -> None:
    assert requirement(str(REPO), "edge") == f"{REPO}[edge]"


@pytest.mark.slow
@pytest.mark.usefixtures("template")
def test_install_with_a_real_venv_from_this_checkout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The venv path for real: python3 -m venv + pip install of this checkout (no extra)."""
    argv = ["install", "--root", str(tmp_path), "--platform", "jetson"]
    code, out = emoedge(capsys, *argv, "--source", str(REPO), "--extra", "none")
    assert code == 0, out
    venv = tmp_path / "opt/emoedge/venv"
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    version = subprocess.run(
        [venv / "bin/emoedge", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("emoedge ")
    assert "/opt/emoedge/venv" in json.loads((tmp_path / MANIFEST).read_text())["created"]

    code, out = emoedge(capsys, *argv, "--source", str(REPO), "--extra", "none")
    assert "nothing to do" in out
    code, out = emoedge(capsys, "uninstall", "--root", str(tmp_path))
    assert code == 0
    assert not (tmp_path / "opt").exists()
