"""The export report (report.json + report.md, one row per artifact) and the int8 quality gate."""

from __future__ import annotations

import json
from pathlib import Path

from edge.core.errors import GateError

SET_COLUMNS = ("face_only", "audio_only", "fused")
TABLE_COLUMNS = (
    ("size_vs_float", "{:.2f}"),
    ("face_only_accuracy", "{:.2f}"),
    ("audio_only_accuracy", "{:.2f}"),
    ("fused_accuracy", "{:.2f}"),
    ("fused_drop", "{:+.2f}"),
    ("agreement", "{:.2f}"),
    ("max_abs_logit_diff", "{:.2g}"),
    ("latency_ms", "{:.3f}"),
)


def row(name: str, fmt: str, precision: str, result: dict, reference_fused: float | None) -> dict:
    """One report row from a validation result (see export.validation)."""
    acc = {k: result["sets"][k]["accuracy"] for k in SET_COLUMNS if k in result["sets"]}
    fused = acc.get("fused")
    return {
        "artifact": name,
        "format": fmt,
        "precision": precision,
        "backend": result.get("backend", "pytorch"),
        "status": "ok",
        "file_bytes": result.get("file_bytes"),
        **{f"{k}_accuracy": v for k, v in acc.items()},
        "fused_drop": None
        if fused is None or reference_fused is None
        else round(reference_fused - fused, 2),
        "agreement": result["agreement"],
        "max_abs_logit_diff": round(result["max_abs_logit_diff"], 6),
        "latency_ms": result["latency_ms"],
    }


def failed_row(name: str, fmt: str, precision: str, error: str) -> dict:
    """A row for an artifact that did not convert or did not load."""
    return {
        "artifact": name,
        "format": fmt,
        "precision": precision,
        "status": "failed",
        "error": error,
    }


def add_size_ratios(rows: list[dict]) -> None:
    """int8 file size as a fraction of the same format's float file, where both exist."""
    float_sizes = {
        r["format"]: r["file_bytes"]
        for r in rows
        if r["status"] == "ok" and r["precision"] != "int8" and r.get("file_bytes")
    }
    for r in rows:
        if r["status"] == "ok" and r["precision"] == "int8" and r["format"] in float_sizes:
            r["size_vs_float"] = round(r["file_bytes"] / float_sizes[r["format"]], 3)


def row_breaches(r: dict, max_int8_drop: float, min_agreement: float) -> list[str]:
    """The int8 bounds that report row `r` breaches, as sentences (none for float rows)."""
    if r["status"] != "ok" or r["precision"] != "int8":
        return []
    breaches = []
    if r.get("fused_drop") is not None and r["fused_drop"] > max_int8_drop:
        breaches.append(
            f"{r['artifact']} loses {r['fused_drop']:.2f} points of fused accuracy "
            f"(bound {max_int8_drop:g})"
        )
    if r["agreement"] < min_agreement:
        breaches.append(
            f"{r['artifact']} agrees with PyTorch on {r['agreement']:.2f} % of samples "
            f"(bound {min_agreement:g} %)"
        )
    return breaches


def gate(rows: list[dict], max_int8_drop: float, min_agreement: float) -> list[str]:
    """Every breach of the int8 bounds, as sentences."""
    return [b for r in rows for b in row_breaches(r, max_int8_drop, min_agreement)]


def _cell(value, fmt: str = "{}") -> str:
    return "–" if value is None else fmt.format(value)


def markdown(report: dict) -> str:
    """report.md: the source, one table row per artifact, failures and the gate verdict."""
    src, ev = report["source"], report["eval"]
    lines = [
        f"# Export report: {src['arch']} `{Path(src['checkpoint']).name}`",
        "",
        f"Checkpoint sha256 `{src['sha256'][:16]}…` · created {report['created']} · "
        f"{ev['split']} split of `{ev['faces']}` + `{ev['speech']}` "
        f"({ev['samples']} samples) · latency: median, batch 1, 1 thread.",
        "",
        "| artifact | backend | size KiB | int8/float | face % | audio % | fused % | "
        "Δ fused | agree % | max Δlogit | latency ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if r["status"] == "ok":
            kib = r["file_bytes"] / 1024 if r.get("file_bytes") else None
            cells = [r["artifact"], r["backend"], _cell(kib, "{:.1f}")]
            cells += [_cell(r.get(key), fmt) for key, fmt in TABLE_COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in report["rows"] if r["status"] != "ok"]
    if failed:
        lines += ["", "## Not converted", ""]
        lines += [f"- **{r['artifact']}**: {r['error']}" for r in failed]
    g = report["gate"]
    lines += [
        "",
        f"## int8 gate (max fused drop {g['max_int8_drop']:g} points, "
        f"min agreement {g['min_agreement']:g} %): {'passed' if g['passed'] else 'FAILED'}",
    ]
    lines += [f"- {b}" for b in g["breaches"]]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> None:
    """DIR/report.json and DIR/report.md."""
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(markdown(report))


def enforce(report: dict) -> None:
    """Raise GateError when the report's gate failed."""
    if not report["gate"]["passed"]:
        raise GateError("int8 quality bound breached: " + "; ".join(report["gate"]["breaches"]))
