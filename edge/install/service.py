"""`emoedge install` / `emoedge uninstall`: the daemon as a systemd service on a board.

From a checkout, before any venv exists: `sudo python3 -m edge.install [options]`
(stdlib only).

Install plans every step first, then applies only the ones that change something, so a
second run changes nothing and says so, and `--dry-run` prints the plan alone. What install
adds is recorded in a manifest (/opt/emoedge/installed.json) that uninstall reads back.
A user's config is never overwritten, and only `uninstall --purge` removes it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path, PurePosixPath

from edge import __version__
from edge.cli import Command
from edge.core.errors import ConfigError, EmoedgeError, UsageError

OPT = "/opt/emoedge"
VENV = f"{OPT}/venv"
MANIFEST = f"{OPT}/installed.json"
CONFIG_DIR = "/etc/emoedge"
CONFIG = f"{CONFIG_DIR}/config.toml"
UNIT_NAME = "emoedge.service"
UNIT = f"/etc/systemd/system/{UNIT_NAME}"
DROPIN_DIR = f"{UNIT}.d"
JETSON_DROPIN = f"{DROPIN_DIR}/jetson-gpu.conf"
STATE_DIRS = ("/var/lib/emoedge", "/var/lib/private/emoedge")
PLATFORMS = ("auto", "raspberry-pi", "jetson", "generic")


@dataclass(frozen=True)
class Step:
    """One planned change: what happens to which path; `apply` is None when nothing changes."""

    verb: str
    target: str
    note: str = ""
    apply: Callable[[], None] | None = None


@dataclass(frozen=True)
class Target:
    """The file system being installed into: the live system (`/`) or a staging root."""

    root: Path

    @property
    def live(self) -> bool:
        return self.root == Path("/")

    @property
    def booted(self) -> bool:
        """A live system whose PID 1 is systemd (sd_booted(3)); not a chroot or an image build,
        where only systemctl's offline verbs (enable, disable) work."""
        return self.live and Path("/run/systemd/system").is_dir()

    def path(self, absolute: str) -> Path:
        """Where a device path such as /etc/emoedge/config.toml lies under the root."""
        return self.root / PurePosixPath(absolute).relative_to("/")

    def systemctl(self, *args: str) -> None:
        """Run systemctl on the live system, or with --root on a staging root (works offline)."""
        command = ["systemctl", *([] if self.live else [f"--root={self.root}"]), *args]
        if shutil.which("systemctl") is None:
            raise EmoedgeError("systemctl not found: emoedge install needs systemd")
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EmoedgeError(f"{' '.join(command)} failed: {result.stderr.strip()}")


def detect_platform() -> str:
    """raspberry-pi, jetson or generic, from the device tree and L4T's release file."""
    model = _read(Path("/proc/device-tree/model"))
    compatible = _read(Path("/proc/device-tree/compatible"))
    if "Raspberry Pi" in model:
        return "raspberry-pi"
    if Path("/etc/nv_tegra_release").exists() or "nvidia,tegra" in compatible:
        return "jetson"
    return "generic"


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace")
    except OSError:
        return ""


def default_source() -> str:
    """This checkout when running from one, else this version from the package index."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "edge").is_dir():
        return str(checkout)
    return f"emoedge=={__version__}"


def requirement(source: str, extra: str) -> str:
    """The pip argument for SOURCE (a path or a requirement) with EXTRA ("none": no extra)."""
    suffix = "" if extra == "none" else f"[{extra}]"
    if Path(source).exists():
        return f"{Path(source).resolve()}{suffix}"
    match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?(.*)", source)
    if not match:
        raise UsageError(f"--source: {source!r} is neither an existing path nor a requirement")
    name, given_extras, rest = match.groups()
    return f"{name}{given_extras or suffix}{rest}"


def _resource(*parts: str) -> bytes:
    resource = files("edge").joinpath(*parts)
    try:
        return resource.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"edge/{'/'.join(parts)} is missing from this installation of emoedge"
        ) from None


# ---------------------------------------------------------------- install


def _write(path: Path, content: bytes, mode: int) -> Callable[[], None]:
    def apply() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)

    return apply


def _file_step(target: Target, dest: str, content: bytes, mode: int = 0o644) -> Step:
    """Create or update DEST with CONTENT; unchanged when it already holds exactly that."""
    path = target.path(dest)
    if path.is_file() and path.read_bytes() == content:
        return Step("unchanged", dest)
    return Step("update" if path.exists() else "create", dest, apply=_write(path, content, mode))


def _venv_steps(target: Target, platform: str, spec: str) -> list[Step]:
    venv = target.path(VENV)
    python = venv / "bin" / "python"
    steps = []
    if python.exists():
        steps.append(Step("unchanged", VENV))
    else:
        # picamera2 and Jetson's OpenCV/TensorRT come from the OS packages: let the venv see them.
        flags = [] if platform == "generic" else ["--system-site-packages"]
        command = [_system_python(), "-m", "venv", *flags, str(venv)]
        note = " ".join(["python3 -m venv", *flags])
        steps.append(Step("create", VENV, note, lambda: _call(command)))
    if (venv / "bin" / "emoedge").exists():
        steps.append(Step("unchanged", f"{VENV}/bin/emoedge", "already installed"))
    else:
        # Raspberry Pi OS builds picamera2 (and its simplejpeg) against its numpy 1.x; a numpy 2
        # in the venv would shadow that one and break them.
        wanted = [spec, *(["numpy<2"] if platform == "raspberry-pi" else [])]
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *wanted]
        note = f"pip install {' '.join(wanted)}"
        steps.append(Step("install", f"{VENV}/bin/emoedge", note, lambda: _call(pip)))
    return steps


def _system_python() -> str:
    """The interpreter the OS packages belong to (picamera2 from apt is built for it)."""
    return shutil.which("python3") or sys.executable


def _call(command: list[str]) -> None:
    if subprocess.run(command, check=False).returncode != 0:
        raise EmoedgeError(f"{' '.join(command)} failed (see the output above)")


def plan_install(target: Target, platform: str, spec: str | None) -> list[Step]:
    """Every install step, in order; SPEC None skips the virtual environment (--no-venv)."""
    steps = _venv_steps(target, platform, spec) if spec else []
    config = target.path(CONFIG)
    if config.exists():
        steps.append(Step("keep", CONFIG, "existing config is never overwritten"))
    else:
        template = _resource("templates", "config.toml")
        steps.append(Step("create", CONFIG, "commented template", _write(config, template, 0o644)))
    steps.append(_file_step(target, UNIT, _resource("systemd", "emoedge.service")))
    if platform == "jetson":
        steps.append(_file_step(target, JETSON_DROPIN, _resource("systemd", "jetson-gpu.conf")))
    if target.booted and any(s.apply for s in steps if s.target in (UNIT, JETSON_DROPIN)):
        steps.append(Step("reload", "systemd", apply=lambda: target.systemctl("daemon-reload")))
    wants = target.path(f"/etc/systemd/system/multi-user.target.wants/{UNIT_NAME}")
    if wants.is_symlink():
        steps.append(Step("unchanged", UNIT_NAME, "enabled"))
    else:
        steps.append(
            Step(
                "enable", UNIT_NAME, "starts at boot", lambda: target.systemctl("enable", UNIT_NAME)
            )
        )
    created = [s.target for s in steps if s.verb == "create"] + [MANIFEST]
    steps.append(_manifest_step(target, platform, created))
    return steps


def _missing_dirs(target: Target, paths: list[str]) -> set[str]:
    """The directories above PATHS that do not exist yet, so installing them creates them."""
    return {
        str(parent)
        for dest in paths
        for parent in PurePosixPath(dest).parents
        if parent != PurePosixPath("/") and not target.path(str(parent)).exists()
    }


def _manifest_step(target: Target, platform: str, created: list[str]) -> Step:
    """The record uninstall works from: every file and directory install ever created here."""
    previous = read_manifest(target)
    record = {
        "version": __version__,
        "platform": platform,
        "created": sorted(set(previous.get("created", [])) | set(created) - {MANIFEST}),
        "directories": sorted(
            set(previous.get("directories", [])) | _missing_dirs(target, created)
        ),
    }
    return _file_step(target, MANIFEST, (json.dumps(record, indent=2) + "\n").encode())


def read_manifest(target: Target) -> dict:
    """The install record, or {} when emoedge was never installed into this root."""
    path = target.path(MANIFEST)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: unreadable install record ({error})") from None


# ---------------------------------------------------------------- uninstall


def _remove(path: Path) -> Callable[[], None]:
    def apply() -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    return apply


def plan_uninstall(target: Target, purge: bool) -> list[Step]:
    """Disable the unit and remove what the manifest lists; the config and the unit's drop-in
    folder (where `systemctl edit` puts local changes) stay unless PURGE."""
    manifest = read_manifest(target)
    steps = []
    if target.path(f"/etc/systemd/system/multi-user.target.wants/{UNIT_NAME}").is_symlink():
        args = ("disable", "--now", UNIT_NAME) if target.booted else ("disable", UNIT_NAME)
        steps.append(Step("disable", UNIT_NAME, apply=lambda: target.systemctl(*args)))
    # --purge takes /etc/emoedge and the drop-in folder as a whole; otherwise the config and
    # drop-ins we did not install (e.g. `systemctl edit`'s override.conf) stay.
    kept = (CONFIG_DIR, DROPIN_DIR) if purge else (CONFIG,)
    for dest in sorted(manifest.get("created", []), reverse=True):
        inside = any(dest == k or dest.startswith(f"{k}/") for k in kept)
        if not inside and target.path(dest).exists():
            steps.append(Step("remove", dest, apply=_remove(target.path(dest))))
    if purge:
        for dest, note in (
            (CONFIG_DIR, "purge"),
            (DROPIN_DIR, "purge: drop-ins, `systemctl edit` overrides included"),
            *((d, "purge") for d in STATE_DIRS),
        ):
            if target.path(dest).exists():
                steps.append(Step("remove", dest, note, _remove(target.path(dest))))
    else:
        if target.path(CONFIG).exists():
            steps.append(Step("keep", CONFIG, "your config; `uninstall --purge` removes it"))
        steps.extend(
            Step("keep", dest, "your drop-in; `uninstall --purge` removes it")
            for dest in _own_dropins(target, manifest)
        )
    if manifest:
        steps.append(Step("remove", MANIFEST, apply=_remove(target.path(MANIFEST))))
    gone = {step.target for step in steps if step.verb == "remove"}
    if steps and steps[0].verb == "disable":
        gone |= {f"/etc/systemd/system/multi-user.target.wants/{UNIT_NAME}"}
        gone |= _emptied(target, "/etc/systemd/system/multi-user.target.wants", gone)
    for dest in sorted(manifest.get("directories", []), reverse=True):
        if dest not in gone and _emptied(target, dest, gone):
            gone.add(dest)
            steps.append(Step("remove", dest, "emptied", _remove(target.path(dest))))
    if target.booted and any(step.apply for step in steps):
        steps.append(Step("reload", "systemd", apply=lambda: target.systemctl("daemon-reload")))
    return steps


def _own_dropins(target: Target, manifest: dict) -> list[str]:
    """Drop-ins of the unit that emoedge did not install (the user's local changes)."""
    folder = target.path(DROPIN_DIR)
    if not folder.is_dir():
        return []
    ours = set(manifest.get("created", []))
    return sorted(
        f"{DROPIN_DIR}/{p.name}" for p in folder.iterdir() if f"{DROPIN_DIR}/{p.name}" not in ours
    )


def _emptied(target: Target, dest: str, gone: set[str]) -> set[str]:
    """{DEST} when it is a directory that holds nothing but paths in GONE, else {}."""
    path = target.path(dest)
    if not path.is_dir() or path.is_symlink():
        return set()
    children = {f"{dest}/{child.name}" for child in path.iterdir()}
    return {dest} if children <= gone else set()


# ---------------------------------------------------------------- commands


def execute(steps: list[Step], dry_run: bool, what: str) -> bool:
    """Print each step and apply the changing ones (none when DRY_RUN); True if any changes."""
    for step in steps:
        verb = f"would {step.verb}" if dry_run and step.apply else step.verb
        note = f"  ({step.note})" if step.note else ""
        print(f"{verb:<16} {step.target}{note}", flush=True)
        if step.apply and not dry_run:
            step.apply()
    changes = any(step.apply for step in steps)
    if not changes:
        print(f"nothing to do: {what}")
    elif dry_run:
        print("dry run: nothing was changed")
    return changes


def _target(args: argparse.Namespace) -> Target:
    root = Path(args.root).resolve()
    if root == Path("/") and not args.dry_run and os.geteuid() != 0:
        raise UsageError("installing into / needs root: run it with sudo, or use --dry-run")
    return Target(root)


def configure_install(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--root", default="/", help="install into this staging root (default /)")
    parser.add_argument(
        "--platform",
        choices=PLATFORMS,
        default="auto",
        help="board the service is for (default: detect this machine)",
    )
    parser.add_argument(
        "--source",
        default=None,
        help="what pip installs: a checkout path or a requirement "
        "(default: this checkout, else emoedge==VERSION)",
    )
    parser.add_argument(
        "--extra",
        default="edge",
        help="the package extra to install (default edge; 'none' for none)",
    )
    parser.add_argument(
        "--no-venv",
        action="store_true",
        help="skip creating /opt/emoedge/venv and pip (staging roots, tests, "
        "or a venv you built yourself)",
    )


def run_install(args: argparse.Namespace) -> int:
    target = _target(args)
    platform = detect_platform() if args.platform == "auto" else args.platform
    spec = None if args.no_venv else requirement(args.source or default_source(), args.extra)
    print(f"emoedge {__version__} install into {target.root} for platform {platform}")
    changed = execute(plan_install(target, platform, spec), args.dry_run, "already installed")
    if changed and not args.dry_run and target.booted:
        print("start it now with: sudo systemctl start emoedge; logs: journalctl -u emoedge -f")
    return 0


def configure_uninstall(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--root", default="/", help="uninstall from this staging root")
    parser.add_argument(
        "--purge",
        action="store_true",
        help="also remove /etc/emoedge (config, secrets) and /var/lib/emoedge",
    )


def run_uninstall(args: argparse.Namespace) -> int:
    target = _target(args)
    execute(plan_uninstall(target, args.purge), args.dry_run, "emoedge is not installed")
    return 0


INSTALL = Command(
    help="install the daemon as a systemd service (venv, config, unit) on this board",
    configure=configure_install,
    run=run_install,
)
UNINSTALL = Command(
    help="remove what `emoedge install` added; keeps /etc/emoedge/config.toml unless --purge",
    configure=configure_uninstall,
    run=run_uninstall,
)
