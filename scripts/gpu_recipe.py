#!/usr/bin/env python3
"""Train on a lent GPU machine from the repository root: check the PyTorch and CUDA found there,
check the data pack's parts, run the recipe (or a list of stages) within a time budget, and
write the checkpoints, logs and records to OUT (8 files at most, 16 MiB each).

    python3 scripts/gpu_recipe.py --pack pack --out "$OUT" --budget-s 540 \\
        --recipe distill/recipes/gpu.toml --scale 1 --final teacher-fused,student-calibrate

Nothing is installed: the project's code runs from the tree (PYTHONPATH), its commands are
made known to `python -m edge.cli` by a generated entry-point record (no pip), and numpy,
torch and tqdm are the machine's own (Python 3.11 or later). The runs live in --run-dir
(default runs/gpu, kept on a warm machine between calls); at the budget's end the run is
interrupted (SIGINT): each stage's last finished epoch stays in its last.pt, and the same
command resumes from there. Exit status: 0 when every stage finished, 75 when the budget
stopped it (resumable), else the failing command's.

OUT receives: <stage>.best.pt for each --final stage that finished, records.tar.gz (every
stage's history.json, metrics and the recipe's records, the log) and summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
OUT_FILE_LIMIT = 16 * 2**20
GRACE_S = 30  # from SIGINT to SIGKILL: the epoch's checkpoint is written by then
RESERVE_S = GRACE_S + 15  # the interruption, its grace and collecting OUT, within the budget
TEMPFAIL = 75  # stopped by the budget; the same command resumes
# what records.tar.gz holds, under the run folder
RECORDS = ("*.log", "*.json", "*.md", "*/*.json", "*/*.md", "*/*/*.json", "*/*/*.md")


def environment() -> dict:
    """What the machine offers; exits 3 when a package the training imports is missing."""
    info = {"python": platform.python_version(), "machine": platform.machine()}
    try:
        import numpy
        import torch
        import tqdm
    except ImportError as error:
        sys.exit(f"gpu_recipe: {error.name} is missing here: the training needs numpy, torch, tqdm")
    info |= {"numpy": numpy.__version__, "torch": torch.__version__, "tqdm": tqdm.__version__}
    info["cuda"] = torch.cuda.is_available()
    if info["cuda"]:
        info |= {
            "device": torch.cuda.get_device_name(0),
            "cuda_version": torch.version.cuda,
            "bf16": torch.cuda.is_bf16_supported(),
        }
    return info


def entry_points(site: Path) -> Path:
    """A dist-info record of the project's commands (from pyproject.toml) under `site`, so
    that `python -m edge.cli` finds them with the tree on PYTHONPATH and nothing installed."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    record = site / "emoedge-0+tree.dist-info"
    record.mkdir(parents=True, exist_ok=True)
    (record / "METADATA").write_text("Metadata-Version: 2.1\nName: emoedge\nVersion: 0+tree\n")
    groups = project["entry-points"]
    (record / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
            for group, points in groups.items()
        )
    )
    return site


def check_pack(pack: Path) -> None:
    """Every part of the pack present and intact (exits 4 naming what is wrong)."""
    sys.path.insert(0, str(REPO))
    from distill.pack import read_manifest, read_parts
    from edge.core.errors import DataError

    try:
        read_parts(pack, read_manifest(pack))
    except DataError as error:
        sys.exit(f"gpu_recipe: {error}")


def commands(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(name, `emoedge` arguments) of each command to run, in order."""
    data = ["--faces", str(args.pack), "--speech", str(args.pack), "--workers", str(args.workers)]
    run = str(args.run_dir)
    if args.recipe:
        scale = ["--scale", str(args.scale)] if args.scale else []
        return [("recipe", ["distill", "--recipe", str(args.recipe), "--out", run, *scale, *data])]
    steps = []
    for line in args.stages.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, *rest = shlex.split(line.replace("{run}", run))
            out = ["--out", str(args.run_dir / name), "--resume"]
            steps.append((name, ["distill", *rest, *data, *out]))
    return steps


def run_until(argv: list[str], env: dict, deadline: float, log) -> int:
    """Run a command, interrupted (SIGINT, then SIGKILL after GRACE_S) at the deadline;
    returns its exit status, or TEMPFAIL when the deadline stopped it."""
    child = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        return child.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return TEMPFAIL


def collect(args: argparse.Namespace, summary: dict) -> None:
    """The final stages' best.pt, and the records and the log as one archive, into OUT."""
    args.out.mkdir(parents=True, exist_ok=True)
    summary["checkpoints"] = {}
    for stage in [s for s in args.final.split(",") if s]:
        best = args.run_dir / stage / "best.pt"
        size = best.stat().st_size if best.is_file() else 0
        if 0 < size <= OUT_FILE_LIMIT:
            (args.out / f"{stage}.best.pt").write_bytes(best.read_bytes())
        summary["checkpoints"][stage] = f"{size / 1e6:.1f} MB" if size else "missing"
        if size > OUT_FILE_LIMIT:
            summary["checkpoints"][stage] += " (over 16 MiB: left in the run folder)"
    records = sorted({p for pattern in RECORDS for p in args.run_dir.glob(pattern) if p.is_file()})
    with tarfile.open(args.out / "records.tar.gz", "w:gz") as tar:
        for path in records:
            tar.add(path, arcname=f"{args.run_dir.name}/{path.relative_to(args.run_dir)}")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--pack", type=Path, default=Path("pack"), help="data pack (emoedge distill pack)"
    )
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-out")))
    p.add_argument("--budget-s", type=float, default=540, help="stop (resumably) after this long")
    p.add_argument("--run-dir", type=Path, default=Path("runs/gpu"))
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--recipe", type=Path, help="emoedge distill --recipe FILE")
    which.add_argument(
        "--stages",
        type=Path,
        help="stand-in for a recipe: per line NAME and its `emoedge distill` options ({run}: "
        "the run folder), each run in RUN/NAME with --resume",
    )
    p.add_argument("--scale", type=float, help="the recipe's --scale")
    p.add_argument(
        "--final",
        default="teacher-fused,student-calibrate",
        help="stages whose best.pt comes back, comma-separated (default %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="loader processes for the speech windows (default: all cores but one)",
    )
    args = p.parse_args()
    start = time.time()
    deadline = start + args.budget_s - RESERVE_S
    args.run_dir = args.run_dir if args.run_dir.is_absolute() else REPO / args.run_dir
    summary: dict = {"environment": environment(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(json.dumps(summary["environment"]), flush=True)
    check_pack(args.pack)
    site = entry_points(args.run_dir / ".site")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(site), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
        "TQDM_MININTERVAL": "30",  # a progress line per 30 s in the log, not per batch
    }
    status, summary["stages"] = 0, []
    with (args.run_dir / "gpu_recipe.log").open("a") as log:
        for name, argv in commands(args):
            t0 = time.time()
            status = run_until([sys.executable, "-m", "edge.cli", *argv], env, deadline, log)
            summary["stages"].append(
                {"name": name, "status": status, "seconds": round(time.time() - t0, 1)}
            )
            print(json.dumps(summary["stages"][-1]), flush=True)
            if status:
                break
    summary |= {"status": status, "seconds": round(time.time() - start, 1)}
    collect(args, summary)
    print(json.dumps({k: summary[k] for k in ("status", "seconds", "checkpoints") if k in summary}))
    return status


if __name__ == "__main__":
    sys.exit(main())
