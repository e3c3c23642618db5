"""`emoedge export`: convert a checkpoint to every requested format and precision, validate
each artifact through its edge backend against PyTorch, write the report, apply the gate."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from distill.checkpoint import front_end, load_checkpoint
from distill.data import load_data
from distill.pairing import build_eval_sets
from edge.core.errors import DataError, ModelError, UsageError
from edge.core.manifest import sha256_file
from export import report as rep
from export.artifact import AllLogits, Job, Source, write_artifact
from export.formats import FLOAT_PRECISION, FORMATS
from export.int8_samples import LazySamples, calibration_samples
from export.validation import validate_artifact, validate_pytorch

log = logging.getLogger(__name__)
CHATTY_LOGGERS = ("onnxscript", "onnx_ir", "nncf")  # INFO lines by the hundred per export


@dataclass
class ExportOptions:
    checkpoint: Path
    out: Path
    formats: tuple[str, ...]
    int8: bool
    calib_faces: Path
    calib_speech: Path | list[Path]
    eval_faces: Path
    eval_speech: Path | list[Path]
    calib_samples: int = 300
    max_int8_drop: float = 1.0
    min_agreement: float = 98.0
    cache_dir: Path | None = None
    eval_split: str = "test"


def speech_names(speech: Path | list[Path]) -> str:
    """The speech corpora as one string for the report ('a, b')."""
    return ", ".join(map(str, speech)) if isinstance(speech, list) else str(speech)


def _convert_and_validate(fmt, precision, calibration, job, source, out, sets, ref):
    name = f"{fmt}-{precision}"
    dest = out / name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    log.info("exporting %s", name)
    converted = FORMATS.get(fmt)(job, dest, calibration)
    write_artifact(dest, converted, source, fmt, precision)
    result = validate_artifact(dest, sets, source.face, ref)
    result["file_bytes"] = sum(
        (dest / f).stat().st_size for f in (converted.model_file, *converted.extra_files)
    )
    write_artifact(dest, converted, source, fmt, precision, metrics=result)
    return result


def _export_all(opts, job, source, calibration, sets, ref_logits, ref_fused) -> list[dict]:
    """Convert and validate every requested format and precision; one report row each."""
    rows = []
    for fmt in opts.formats:
        variants = [(FLOAT_PRECISION[fmt], None)] + ([("int8", calibration)] if opts.int8 else [])
        for precision, calib in variants:
            name = f"{fmt}-{precision}"
            try:
                result = _convert_and_validate(
                    fmt, precision, calib, job, source, opts.out, sets, ref_logits
                )
            except Exception as error:  # one format failing must not stop the others
                message = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
                log.error("%s did not convert: %s", name, message)
                shutil.rmtree(opts.out / name, ignore_errors=True)
                rows.append(rep.failed_row(name, fmt, precision, message))
                continue
            rows.append(rep.row(name, fmt, precision, result, ref_fused))
    return rows


def export_checkpoint(opts: ExportOptions) -> dict:
    """Run the export; returns the report (also written to OUT). Raises GateError on a breach."""
    if opts.int8 and opts.calib_samples < 1:
        raise DataError(f"--calib-samples must be at least 1 (got {opts.calib_samples})")
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    model, meta = load_checkpoint(opts.checkpoint)
    audio_cfg, face_cfg = front_end(meta)
    prior = model.voice_prior()
    others = sorted(set(opts.formats) - {"onnx"})
    if prior is not None and others:
        raise UsageError(
            f"{opts.checkpoint}: its voice adapts to where it is deployed, which only the ONNX "
            f"artifact carries (OpenVINO reads that file); not {', '.join(others)}"
        )
    source = Source(
        opts.checkpoint,
        sha256_file(opts.checkpoint),
        meta["arch"],
        audio_cfg,
        face_cfg,
        voice_prior=prior,
    )
    sets = build_eval_sets(
        *load_data(opts.eval_faces, opts.eval_speech, opts.eval_split, audio_cfg, opts.cache_dir),
        audio_cfg,
    )
    calibration = None
    if opts.int8:  # drawn when a static int8 conversion first asks
        calibration = LazySamples(
            partial(
                calibration_samples,
                opts.calib_faces,
                opts.calib_speech,
                audio_cfg,
                face_cfg,
                opts.calib_samples,
                opts.cache_dir,
            )
        )
    opts.out.mkdir(parents=True, exist_ok=True)
    ref_logits, ref = validate_pytorch(model, sets, face_cfg)
    ref_fused = ref["sets"].get("fused", {}).get("accuracy")
    rows = [rep.row("pytorch", "pytorch", "fp32", ref, ref_fused)]
    with tempfile.TemporaryDirectory() as tmp:
        job = Job(AllLogits(model).eval(), audio_cfg, face_cfg, Path(tmp), voice_prior=prior)
        rows += _export_all(opts, job, source, calibration, sets, ref_logits, ref_fused)
    rep.add_size_ratios(rows)
    breaches = rep.gate(rows, opts.max_int8_drop, opts.min_agreement)
    report = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {
            "checkpoint": str(opts.checkpoint),
            "sha256": source.sha256,
            "arch": source.arch,
        },
        "eval": {
            "faces": str(opts.eval_faces),
            "speech": speech_names(opts.eval_speech),
            "split": opts.eval_split,
            "samples": ref["n"],
        },
        "calibration": None
        if calibration is None or not calibration.drawn
        else {
            "faces": str(opts.calib_faces),
            "speech": speech_names(opts.calib_speech),
            "split": "train",
            "samples": len(calibration),
        },
        "rows": rows,
        "gate": {
            "max_int8_drop": opts.max_int8_drop,
            "min_agreement": opts.min_agreement,
            "passed": not breaches,
            "breaches": breaches,
        },
    }
    rep.write_report(report, opts.out)
    if not any(r["status"] == "ok" for r in rows[1:]):
        raise ModelError(f"no artifact converted; see {opts.out / 'report.md'}")
    rep.enforce(report)
    return report
