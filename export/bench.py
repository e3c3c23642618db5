"""`emoedge bench`: latency (median, p95), throughput and peak memory of every artifact in a
folder, per thread count, with the PyTorch checkpoints for reference.

Each measurement runs in a fresh process, so peak memory (ru_maxrss) is that of one model
on one runtime, and no runtime's thread pool or allocator leaks into the next measurement.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge.core.errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """Something to measure: an exported artifact folder or a PyTorch checkpoint."""

    name: str
    kind: str  # "artifact" or "pytorch"
    path: str


def discover(directories: list[Path], teacher: Path | None) -> list[Target]:
    """Every artifact under the folders, the checkpoints they were exported from and the
    teacher. With several folders, artifact names are prefixed with their folder's name."""
    targets, checkpoints = [], []
    for directory in directories:
        prefix = f"{Path(directory).name}/" if len(directories) > 1 else ""
        found = sorted(Path(directory).glob("*/manifest.json"))
        if not found:
            raise ModelError(
                f"no artifacts (*/manifest.json) under {directory}; run emoedge export"
            )
        targets += [Target(prefix + p.parent.name, "artifact", str(p.parent)) for p in found]
        report = Path(directory) / "report.json"
        if report.is_file():
            checkpoints.append(Path(json.loads(report.read_text())["source"]["checkpoint"]))
    if teacher is not None:
        checkpoints.append(teacher)
    seen: set[Path] = set()
    for ckpt in checkpoints:
        if ckpt.is_file() and ckpt.resolve() not in seen:
            seen.add(ckpt.resolve())
            targets.append(Target(f"pytorch:{ckpt.parent.name}/{ckpt.name}", "pytorch", str(ckpt)))
    return targets


def _inputs(face_size: int, frames: int, features: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    return (
        rng.standard_normal((1, 1, face_size, face_size), dtype=np.float32),
        rng.standard_normal((1, frames, features), dtype=np.float32),
        np.ones((1, 2), np.float32),
    )


def _load(target: Target, threads: int):
    """A batch-1 logits function for `target` and a fused input of its shapes."""
    if target.kind == "artifact":
        from edge.backends import load_artifact

        runner = load_artifact(target.path, threads=threads)
        audio, face = runner.manifest.audio, runner.manifest.face
        return runner.logits, runner.name, _inputs(face.size, audio.num_frames, audio.feature_dim)
    import torch

    from distill.checkpoint import front_end, load_checkpoint
    from export.validation import torch_logits

    torch.set_num_threads(threads)
    model, meta = load_checkpoint(Path(target.path))
    audio, face = front_end(meta)
    inputs = _inputs(face.size, audio.num_frames, audio.feature_dim)
    return torch_logits(model), f"pytorch {meta['arch']}", inputs


def measure(target: Target, threads: int, runs: int, warmup: int) -> dict:
    """Latency, throughput and peak memory of one target at one thread count (in this process)."""
    fn, runtime, inputs = _load(target, threads)
    for _ in range(warmup):
        fn(*inputs)
    times = np.empty(runs)
    start = time.perf_counter()
    for i in range(runs):
        t0 = time.perf_counter()
        fn(*inputs)
        times[i] = time.perf_counter() - t0
    total = time.perf_counter() - start
    return {
        "target": target.name,
        "runtime": runtime,
        "threads": threads,
        "median_ms": round(1000 * float(np.median(times)), 4),
        "p95_ms": round(1000 * float(np.percentile(times, 95)), 4),
        "throughput_per_s": round(runs / total, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure_in_fresh_process(target: Target, threads: int, runs: int, warmup: int) -> dict:
    """`measure` in a newly spawned interpreter; a failure becomes an 'error' entry."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        try:
            return pool.apply(measure, (target, threads, runs, warmup))
        except Exception as error:  # a runtime that cannot load this artifact here
            log.error("%s at %d thread(s): %s", target.name, threads, error)
            return {"target": target.name, "threads": threads, "error": str(error)}


def markdown(results: list[dict]) -> str:
    """One table row per target and thread count."""
    lines = [
        "| target | runtime | threads | median ms | p95 ms | throughput /s | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['target']} | failed: {r['error'][:80]} | {r['threads']} ||||| ")
            continue
        lines.append(
            f"| {r['target']} | {r['runtime']} | {r['threads']} | {r['median_ms']:.3f} | "
            f"{r['p95_ms']:.3f} | {r['throughput_per_s']:.0f} | {r['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def bar_chart(results: list[dict], path: Path) -> Path:
    """Median latency per target, one bar per thread count (log scale), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    ok = [r for r in results if "error" not in r]
    names = list(dict.fromkeys(r["target"] for r in ok))
    threads = sorted({r["threads"] for r in ok})
    width = 0.8 / max(len(threads), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names)), 4.5))
    for k, t in enumerate(threads):
        values = {r["target"]: r["median_ms"] for r in ok if r["threads"] == t}
        xs = [i + k * width for i, n in enumerate(names) if n in values]
        ax.bar(xs, [values[n] for n in names if n in values], width, label=f"{t} thread(s)")
    ax.set_xticks([i + width * (len(threads) - 1) / 2 for i in range(len(names))])
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("median latency per inference, ms (batch 1)")
    ax.set_title("emoedge bench")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_bench(
    directories: list[Path],
    threads: tuple[int, ...],
    runs: int,
    warmup: int,
    teacher: Path | None,
    json_path: Path | None,
    out: Path | None = None,
) -> int:
    """Measure every target at every thread count and print the table; write bench.md and
    bench.png into `out` and JSON into `json_path` where asked, nothing anywhere else."""
    targets = discover(directories, teacher)
    results = [
        measure_in_fresh_process(target, t, runs, warmup) for target in targets for t in threads
    ]
    table = markdown(results)
    print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        chart = bar_chart(results, out / "bench.png")  # first: it needs matplotlib
        (out / "bench.md").write_text(table)
        print(f"table: {out / 'bench.md'}, chart: {chart}")
    payload = {
        "runs": runs,
        "warmup": warmup,
        "results": results,
        "targets": [asdict(t) for t in targets],
    }
    if json_path:
        json_path.write_text(json.dumps(payload, indent=1) + "\n")
    return 1 if any("error" in r for r in results) else 0
