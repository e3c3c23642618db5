"""Bundle an export as one of the edge package's bundled models (edge/models/<name>).

Per format the int8 artifact ships when it converted and passed the int8 gate, otherwise the
format's float artifact; the fp32 ONNX ships as well (every runtime can fall back to it). The
export's report.md is copied with a section naming what was shipped and why.

    python -m export.bundle [--no-fallback] EXPORT_DIR DEST
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from edge.core.errors import EmoedgeError, ModelError
from export.formats import FLOAT_PRECISION
from export.report import row_breaches

ALWAYS = ("onnx-fp32",)


def choose(report: dict, fallback: bool = True) -> dict[str, str]:
    """{artifact: why} for the artifacts to ship, from an export's report.json contents (the
    fp32 ONNX too unless `fallback` is False)."""
    rows = {r["artifact"]: r for r in report["rows"]}
    bounds = (report["gate"]["max_int8_drop"], report["gate"]["min_agreement"])
    chosen: dict[str, str] = {}
    for fmt, float_precision in FLOAT_PRECISION.items():
        int8, flt = rows.get(f"{fmt}-int8"), rows.get(f"{fmt}-{float_precision}")
        breaches = row_breaches(int8, *bounds) if int8 else []
        if int8 and int8["status"] == "ok" and not breaches:
            chosen[int8["artifact"]] = "int8, passed the gate"
        elif flt and flt["status"] == "ok":
            reason = "; ".join(breaches) or (
                f"{fmt}-int8 {'did not convert' if int8 else 'was not exported'}"
            )
            chosen[flt["artifact"]] = f"float instead: {reason}"
    for name in ALWAYS if fallback else ():
        if rows.get(name, {}).get("status") == "ok":
            chosen.setdefault(name, "fp32 fallback for every runtime")
    return chosen


def bundle(export_dir: Path, dest: Path, fallback: bool = True) -> dict[str, str]:
    """Replace `dest` with the chosen artifacts of `export_dir` and its annotated report (with
    the fp32 ONNX as every runtime's fallback unless `fallback` is False)."""
    report_file = export_dir / "report.json"
    if not report_file.is_file():
        raise ModelError(f"{report_file} not found: run `emoedge export` into {export_dir} first")
    report = json.loads(report_file.read_text())
    split = report["eval"]["split"]
    if split != "test":
        raise ModelError(
            f"{export_dir} was validated on the {split} split; the bundled model's report must "
            "be the test split's: export again without --eval-split"
        )
    chosen = choose(report, fallback)
    if not chosen:
        raise ModelError(f"nothing in {export_dir} converted; see its report.md")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in chosen:
        shutil.copytree(export_dir / name, dest / name)
    shipped = "".join(f"- **{name}**: {why}\n" for name, why in chosen.items())
    report_md = (export_dir / "report.md").read_text()
    (dest / "report.md").write_text(f"{report_md}\n## Shipped with the edge package\n\n{shipped}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.bundle", description=__doc__)
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument(
        "--no-fallback",
        action="store_true",
        help="do not ship the fp32 ONNX beside the chosen artifacts (for a large model)",
    )
    args = parser.parse_args(argv)
    try:
        for name, why in bundle(args.export_dir, args.dest, not args.no_fallback).items():
            print(f"{name}: {why}")
    except EmoedgeError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
