"""Score a checkpoint or an exported artifact on a split, and format the result as a table."""

from __future__ import annotations

from pathlib import Path

from distill.evaluate import Predictor, evaluate
from distill.pairing import build_eval_sets
from edge.audio import AudioConfig
from edge.face import FaceConfig

ROWS = (
    ("face_only", "face only"),
    ("audio_only", "audio only"),
    ("fused", "fused (class-paired)"),
    ("fused_audio_missing", "fused pairs, audio masked"),
    ("fused_face_missing", "fused pairs, face masked"),
)


def load_predictor(
    model: str | Path, backend: str | None = None
) -> tuple[Predictor, AudioConfig, FaceConfig, str]:
    """A predictor for a .pt checkpoint (PyTorch) or an exported artifact (edge backend)."""
    path = Path(model)
    if path.suffix == ".pt":
        from distill.checkpoint import front_end, load_checkpoint
        from distill.train import torch_predictor

        net, meta = load_checkpoint(path)
        audio_cfg, face_cfg = front_end(meta)
        return torch_predictor(net), audio_cfg, face_cfg, f"pytorch {meta['arch']}"
    from edge.backends import load_artifact

    runner = load_artifact(path, backend)
    return (
        runner.predict,
        runner.manifest.audio,
        runner.manifest.face,
        f"{runner.name} {runner.manifest.precision}",
    )


def score_model(
    model: str | Path,
    faces: Path,
    speech: Path,
    split: str = "test",
    backend: str | None = None,
    cache_dir: Path | None = None,
) -> dict:
    """Metrics of a model on the given split: every row of ROWS that the data allows."""
    from distill.train import load_data

    predict, audio_cfg, face_cfg, name = load_predictor(model, backend)
    face_data, audio_data = load_data(faces, speech, split, audio_cfg, cache_dir)
    sets = build_eval_sets(face_data, audio_data, audio_cfg)
    return {
        "model": str(model),
        "runtime": name,
        "split": split,
        "metrics": evaluate(predict, sets, face_cfg),
    }


def table(result: dict) -> str:
    """A Markdown table: one row per evaluation set."""
    lines = [
        f"{result['runtime']} · {result['model']} · split {result['split']}",
        "",
        "| input | n | accuracy % | macro-F1 % | UAR % |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in ROWS:
        m = result["metrics"].get(key)
        if m:
            lines.append(
                f"| {label} | {m['n']} | {m['accuracy']:.2f} | {m['macro_f1']:.2f} | "
                f"{m['uar']:.2f} |"
            )
    return "\n".join(lines)
