"""The `emoedge` command: subcommands are found through the `emoedge.commands` entry points.

`edge` never imports the workstation packages; `distill` and `export` register their
commands in pyproject.toml. A command whose extra is not installed says which one to install.
`emoedge bench` is edge's: the benchmarks it runs are plugins as well (`emoedge.benchmarks`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar

from edge import __version__
from edge.core.errors import EmoedgeError, UsageError
from edge.core.registry import Registry

log = logging.getLogger("emoedge")


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, how it declares its arguments and what it runs."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    extra: str = "edge"


OWN_PACKAGES = ("edge", "distill", "export")


def missing_extra(name: str, extra: str, error: ImportError) -> UsageError:
    """The error for a command whose extra (optional dependencies) is not installed."""
    return UsageError(
        f"'emoedge {name}' needs the '{extra}' extra, which is not installed here ({error}); "
        f"install it with pip install 'emoedge[{extra}]' (from the wheel: pip install "
        f"'./emoedge-{__version__}-py3-none-any.whl[{extra}]')"
    )


def _unavailable(name: str, extra: str, error: ImportError) -> Command:
    def run(_: argparse.Namespace) -> int:
        raise missing_extra(name, extra, error)

    return Command(help=f"(needs the '{extra}' extra)", configure=lambda p: None, run=run)


def _load(group: str, shown: Callable[[str], str]) -> dict[str, Command]:
    """The Commands registered in the entry-point `group` by name, sorted; one whose module
    cannot be imported says which extra `emoedge <shown(name)>` needs."""
    found: dict[str, Command] = {}
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            found[ep.name] = ep.load()
        except ImportError as error:
            extra = "edge" if ep.value.startswith("edge.") else "workstation"
            found[ep.name] = _unavailable(shown(ep.name), extra, error)
    return found


def load_commands() -> dict[str, Command]:
    """All registered subcommands by name, sorted."""
    return _load("emoedge.commands", lambda name: name)


# -- emoedge bench: what it measures is a plugin too ------------------------------------------
# Each benchmark is a Command in the `emoedge.benchmarks` entry points: `artifacts` (the
# workstation's, the default) and the device's `pipeline` and `mqtt`, chosen by --pipeline and
# --mqtt. The options they share are declared here; each benchmark adds its own.

DEFAULT_BENCHMARK = "artifacts"


def load_benchmarks() -> Registry[Command]:
    """The benchmarks `emoedge bench` can run, by name."""
    benchmarks = Registry[Command]("benchmark")
    shown = {DEFAULT_BENCHMARK: "bench"}
    for name, command in _load(
        "emoedge.benchmarks", lambda n: shown.get(n, f"bench --{n}")
    ).items():
        benchmarks.register(name)(command)
    return benchmarks


def _configure_bench(p: argparse.ArgumentParser) -> None:
    benchmarks = load_benchmarks()
    p.add_argument(
        "dirs", type=Path, nargs="*", metavar="DIR",
        help="folders of exported artifacts (emoedge export --out; default build/export), e.g. "
        "student and teacher; "
        "--pipeline: the model (an artifact folder, or a bundled model by name or folder; "
        "default: the bundled default)",
    )  # fmt: skip
    p.add_argument("--threads", default="1,2,4",
                   help="thread counts to measure (--pipeline: the first)")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--seconds", type=float, default=10.0,
        help="--mqtt duration; --pipeline: the as-fast-as-possible part (and the real-time "
        "part unless --duration)",
    )  # fmt: skip
    p.add_argument(
        "--rate", type=float, default=10.0,
        help="--mqtt: messages/s per device; --pipeline: cycles/s of the real-time part",
    )  # fmt: skip
    which = p.add_mutually_exclusive_group()
    for name in benchmarks:
        benchmark = benchmarks.get(name)
        if name != DEFAULT_BENCHMARK:
            which.add_argument(f"--{name}", dest="benchmark", action="store_const", const=name,
                               help=benchmark.help)  # fmt: skip
        benchmark.configure(p)
    p.set_defaults(benchmark=DEFAULT_BENCHMARK, _benchmarks=benchmarks)


def _run_bench(args: argparse.Namespace) -> int:
    benchmark = args._benchmarks.get(args.benchmark)
    args._extra = benchmark.extra  # a package missing now is the chosen benchmark's extra
    return benchmark.run(args)


BENCH = Command(
    help="benchmarks: exported artifacts (and the teacher) per thread count by default, "
    "the device pipeline (--pipeline) or MQTT publishing (--mqtt)",
    configure=_configure_bench,
    run=_run_bench,
)


def configure_logging(verbose: int) -> None:
    """Log to stderr. When stderr is systemd's journal stream, leave timestamps to journald and
    start every line with its syslog priority (`<N>`), which journald records as the level."""
    level = logging.DEBUG if verbose > 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if _stderr_is_journal():
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def _stderr_is_journal() -> bool:
    """True when stderr is the stream systemd connected to journald (JOURNAL_STREAM=dev:inode);
    the variable alone is not enough, since children inherit it with other streams."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat(sys.stderr.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (ValueError, OSError):
        return False


class _JournalFormatter(logging.Formatter):
    """Prefixes every line, tracebacks included, with the record's syslog priority."""

    _SYSLOG: ClassVar[tuple[tuple[int, int], ...]] = (
        (logging.CRITICAL, 2),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (logging.INFO, 6),
    )

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in self._SYSLOG if record.levelno >= level), 7)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def build_parser(commands: dict[str, Command]) -> argparse.ArgumentParser:
    """The top-level parser with one subparser per registered command."""
    parser = argparse.ArgumentParser(
        prog="emoedge", description="Face + voice emotion recognition on the edge."
    )
    parser.add_argument("--version", action="version", version=f"emoedge {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in commands.items():
        sp = sub.add_parser(name, help=command.help, description=command.help)
        command.configure(sp)
        sp.set_defaults(_run=command.run, _extra=command.extra)
    return parser


def main(argv: Sequence[str] | None = None, commands: dict[str, Command] | None = None) -> int:
    """Entry point of the `emoedge` console script (COMMANDS: the registered ones by default)."""
    parser = build_parser(load_commands() if commands is None else commands)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    configure_logging(args.verbose)
    try:
        try:
            return int(args._run(args) or 0)
        except ModuleNotFoundError as error:  # a command imports its extra's packages lazily
            if (error.name or "").partition(".")[0] in OWN_PACKAGES:
                raise
            raise missing_extra(args.command, args._extra, error) from None
    except EmoedgeError as error:
        print(f"emoedge {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"emoedge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
