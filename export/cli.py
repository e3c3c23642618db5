"""`emoedge export` and the artifact benchmark of `emoedge bench`. Torch and the converters load
only when a command runs."""

from __future__ import annotations

import argparse
import zipfile
from importlib import import_module
from pathlib import Path

from edge.cli import Command
from edge.core.errors import ModelError, UsageError

DEFAULT_TEACHER = "distill/checkpoints/teacher.pt"


def _configure_export(p: argparse.ArgumentParser) -> None:
    from distill.config import DEFAULT_FACES, DEFAULT_SPEECH

    p.add_argument("checkpoint", type=Path, help="PyTorch checkpoint (.pt) from emoedge distill")
    p.add_argument("--formats", default="onnx,openvino,tflite", help="comma-separated formats")
    p.add_argument("--int8", action="store_true", help="also export int8 of every format")
    p.add_argument("--out", type=Path, default=Path("build/export"), help="output folder")
    p.add_argument("--faces", type=Path, default=Path(DEFAULT_FACES), help="FER2013 corpus")
    p.add_argument(
        "--speech",
        type=Path,
        nargs="+",
        default=[Path(p) for p in DEFAULT_SPEECH],
        help="speech corpora (RAVDESS, EmoDB, URDU or <class>/ folders)",
    )
    p.add_argument("--calib-faces", type=Path, help="calibration faces (train split; --faces)")
    p.add_argument(
        "--calib-speech", type=Path, nargs="+", help="calibration speech (train split; --speech)"
    )
    p.add_argument("--calib-samples", type=int, default=300, help="int8 calibration inputs")
    p.add_argument(
        "--eval-split",
        choices=("test", "val"),
        default="test",
        help="split the artifacts are validated on (val: to choose export settings, such as "
        "--calib-samples, without looking at the test split; the bundle takes test only)",
    )
    p.add_argument("--eval-faces", type=Path, help="validation faces (--faces)")
    p.add_argument("--eval-speech", type=Path, nargs="+", help="validation speech (--speech)")
    p.add_argument(
        "--max-int8-drop", type=float, default=1.0, help="fail when int8 loses more fused points"
    )
    p.add_argument(
        "--min-agreement", type=float, default=98.0, help="fail when int8 agrees on fewer %%"
    )
    p.add_argument("--cache-dir", type=Path, help="decoded-corpus cache (default ~/.cache)")


def _require_checkpoint(path: Path) -> None:
    """ModelError unless `path` is a file in PyTorch's checkpoint format (a zip archive)."""
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ModelError(
            f"{path} is not a PyTorch checkpoint (expected the .pt file that emoedge distill "
            "writes, e.g. distill/checkpoints/student.pt)"
        )


def _run_export(args: argparse.Namespace) -> int:
    _require_checkpoint(args.checkpoint)
    from export.exporter import ExportOptions, export_checkpoint
    from export.formats import parse_formats

    report = export_checkpoint(
        ExportOptions(
            checkpoint=args.checkpoint,
            out=args.out,
            formats=parse_formats(args.formats),
            int8=args.int8,
            calib_faces=args.calib_faces or args.faces,
            calib_speech=args.calib_speech or args.speech,
            eval_faces=args.eval_faces or args.faces,
            eval_speech=args.eval_speech or args.speech,
            calib_samples=args.calib_samples,
            max_int8_drop=args.max_int8_drop,
            min_agreement=args.min_agreement,
            cache_dir=args.cache_dir,
            eval_split=args.eval_split,
        )
    )
    print((args.out / "report.md").read_text())
    failed = [r["artifact"] for r in report["rows"] if r["status"] != "ok"]
    if failed:
        raise ModelError(
            f"not converted: {', '.join(failed)}; the other artifacts were written "
            f"(see {args.out / 'report.md'})"
        )
    return 0


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--threads {text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise UsageError(f"--threads {text!r}: expected positive integers, e.g. 1,2,4")
    return values


def _configure_bench(p: argparse.ArgumentParser) -> None:
    """The artifact benchmark's own options (`emoedge bench` declares DIR, --threads, --json)."""
    p.add_argument("--runs", type=int, default=200, help="timed runs per measurement")
    p.add_argument("--warmup", type=int, default=20, help="untimed runs first")
    p.add_argument("--out", type=Path, help="also write bench.md and bench.png into this folder")
    p.add_argument(
        "--teacher",
        type=Path,
        default=Path(DEFAULT_TEACHER),
        help="PyTorch checkpoint measured for reference when present",
    )


def _run_bench(args: argparse.Namespace) -> int:
    import_module("torch")  # the PyTorch reference is measured in a subprocess: fail here
    import_module("matplotlib")  # the chart
    from export.bench import run_bench

    dirs = args.dirs or [Path("build/export")]
    return run_bench(
        dirs, _int_list(args.threads), args.runs, args.warmup, args.teacher, args.json, args.out
    )


EXPORT = Command(
    help="export a checkpoint to ONNX / OpenVINO / TFLite (fp32, int8), validated vs PyTorch",
    configure=_configure_export,
    run=_run_export,
    extra="workstation",
)
# `emoedge bench` (edge.cli) runs it by default: the `artifacts` entry of emoedge.benchmarks.
BENCH = Command(
    help="latency, throughput and memory of exported artifacts (and the teacher) per thread count",
    configure=_configure_bench,
    run=_run_bench,
    extra="workstation",
)
