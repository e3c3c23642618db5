"""Running a recipe (distill.recipe): its stages in order, each in OUT/<stage>/, with a record
per stage in OUT/recipe.json and a table of them at the end.

A stage recorded as done with the same fingerprint is skipped; an interrupted or failed one
runs again, a training stage resuming from its OUT/<stage>/last.pt. A stage whose options (or
those of a stage it uses) changed since it ran is refused before anything runs: `--from NAME`
reruns NAME and every stage after it, `--only NAME` NAME alone (the stages it uses must be
done). Training runs in this process; evaluation, export and bundling run their commands as
subprocesses of this interpreter (`python -m edge.cli evaluate|export`, `python -m
export.bundle`), so distill never imports export and the recorded command is the one that ran.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from distill.config import TrainConfig
from distill.provenance import environment
from distill.recipe import RUNTIME_ONLY, Recipe, Step
from edge.core.errors import EmoedgeError, GateError, UsageError

log = logging.getLogger(__name__)

RECORDS = "recipe.json"
# what each training stage's best validation score is
SCORE = {
    "face": "val face accuracy (FER+ majority where voted)",
    "audio": "val voice UAR, mean over corpora",
    "fused": "val mean of face (FER+ majority where voted), voice, fused accuracy",
    "calibrate": "val fused accuracy",
    "crosscorpus": "held-out voice UAR, mean over corpora",
}
NEGATED = {"kd_face_only": "--no-kd-face-only"}  # boolean options whose flag turns them off


def run_recipe(recipe: Recipe, start: str | None = None, only: str | None = None) -> dict:
    """Run the stages `plan` chooses; returns the records (also in OUT/recipe.json)."""
    records = read_records(recipe.out)
    actions = plan(recipe, records["stages"], start, only)
    records |= {"recipe": str(recipe.path), "seed": recipe.seed, "scale": recipe.scale}
    for step, action in zip(recipe.steps, actions, strict=True):
        if action in ("skip", "leave"):
            log.info(
                "stage %s: %s", step.name, "done, skipped" if action == "skip" else "not chosen"
            )
            continue
        run_step(step, action == "resume", recipe, records)
    print(table(recipe, records["stages"]))
    return records


def read_records(out: Path) -> dict:
    path = out / RECORDS
    if not path.is_file():
        return {"stages": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: not JSON ({error}); remove it or give another --out") from None


def write_records(out: Path, records: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{RECORDS}.tmp").write_text(json.dumps(records, indent=1, default=str) + "\n")
    (out / f"{RECORDS}.tmp").replace(out / RECORDS)


def plan(recipe: Recipe, records: dict, start: str | None, only: str | None) -> list[str]:
    """Per stage 'run' (afresh), 'resume', 'skip' (done) or 'leave' (not chosen by --from or
    --only); a UsageError lists every stage that changed since it ran and every stage a chosen
    one uses that has not finished."""
    names = recipe.names()
    for flag, name in (("--from", start), ("--only", only)):
        if name is not None and name not in names:
            raise UsageError(f"{flag} {name}: no such stage; the stages: {', '.join(names)}")
    chosen = {only} if only else set(names[names.index(start) :] if start else names)
    forced = chosen if start or only else set()
    needed = chosen | {used for s in recipe.steps if s.name in chosen for used in s.uses.values()}
    actions: list[str] = []
    problems: list[tuple[str, str]] = []  # (stage, what is wrong)
    for step in recipe.steps:
        record = records.get(step.name)
        if step.name in forced:
            actions.append("run")
            continue
        actions.append("skip" if step.name in chosen else "leave")
        if step.name not in needed:
            continue
        if record and record["fingerprint"] != step.fingerprint:
            problems.append((step.name, changed(step, record, recipe)))
        elif step.name not in chosen and (not record or record["status"] != "done"):
            problems.append((step.name, f"'{step.name}' is used by a chosen stage, not finished"))
        elif step.name in chosen and (not record or record["status"] != "done"):
            actions[-1] = "resume" if record and step.trains else "run"
    if problems:
        listed = "\n".join(f"  - {p}" for _, p in problems)
        raise UsageError(
            f"{recipe.out / RECORDS}: nothing was run:\n{listed}\nrerun with --from "
            f"{problems[0][0]} (or give another --out)"
        )
    return actions


def changed(step: Step, record: dict, recipe: Recipe) -> str:
    """What changed in a stage since its record was written."""
    before = record["options"]
    diffs = [
        f"{k} {before.get(k)!r} → {v!r}"
        for k, v in step.options.items()
        if k not in RUNTIME_ONLY and k not in step.uses and before.get(k) != v
    ]
    diffs += [
        f"{k} = '{name}', which changed"
        for k, name in step.uses.items()
        if record["uses"].get(k) != {"stage": name, "fingerprint": recipe.step(name).fingerprint}
    ]
    return f"'{step.name}' changed since it ran: {'; '.join(diffs) or 'its stage'}"


def run_step(step: Step, resume: bool, recipe: Recipe, records: dict) -> None:
    """Run (or resume) one stage, its record kept in `records` and OUT/recipe.json."""
    folder = recipe.out / step.name
    previous = records["stages"].get(step.name) if resume else None
    if not resume and step.name in records["stages"]:
        shutil.rmtree(folder, ignore_errors=True)  # the recipe's own folder from an earlier run
    argv = command(step, folder)
    record = {
        "stage": step.kind,
        "status": "running",
        "fingerprint": step.fingerprint,
        "options": step.options,
        "uses": {
            k: {"stage": name, "fingerprint": recipe.step(name).fingerprint}
            for k, name in step.uses.items()
        },
        "command": shlex.join(argv),
        "seed": step.options.get("seed", recipe.seed),
        "started": (previous or {}).get("started") or _now(),
        "finished": None,
        "seconds": (previous or {}).get("seconds", 0.0),
        "attempts": (previous or {}).get("attempts", 0) + 1,
        **machine(),
    }
    records["stages"][step.name] = record
    write_records(recipe.out, records)
    log.info("stage %s%s: %s", step.name, " (resumed)" if resume else "", record["command"])
    t0 = time.time()
    try:
        if step.trains:
            metrics, key = train(step, folder, resume)
        else:
            metrics, key = run_command(step, argv, folder)
        record |= {"status": "done", "metrics": metrics, "key_metric": key}
    except BaseException as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        record |= {"status": "interrupted" if interrupted else "failed", "error": str(error)}
        raise
    finally:
        record |= {"finished": _now(), "seconds": round(record["seconds"] + time.time() - t0, 1)}
        write_records(recipe.out, records)


def train(step: Step, folder: Path, resume: bool) -> tuple[dict, str]:
    """A training stage in this process: its best validation score and history."""
    from distill.checkpoint import plain_data
    from distill.train import train as train_stage

    cfg = TrainConfig(stage=step.kind, out=str(folder), resume=resume, **step.options)
    result = plain_data(train_stage(cfg))
    return result, f"{result['best_val_score']:.2f} {SCORE[step.kind]}"


def run_command(step: Step, argv: list[str], folder: Path) -> tuple[dict, str]:
    """An evaluate, export or bundle stage: its command as a subprocess of this interpreter;
    the metrics it wrote. An export whose int8 artifacts failed the gate (exit 8) is done: the
    bundle ships the float artifacts instead, as `make lite-model` does."""
    program, *args = argv
    prefix = [sys.executable] + (["-m", "edge.cli"] if program == "emoedge" else [])
    code = subprocess.run([*prefix, *args], check=False).returncode
    if code not in ((0, GateError.exit_code) if step.kind == "export" else (0,)):
        raise _error_for(code)(f"`{shlex.join(argv)}` exited with {code} (see its output above)")
    return OUTCOMES[step.kind](folder)


def evaluated(folder: Path) -> tuple[dict, str]:
    """The test metrics `emoedge evaluate --json` wrote: n, accuracy and UAR per input."""
    result = json.loads((folder / "metrics.json").read_text())["metrics"]
    metrics = {k: {m: v[m] for m in ("n", "accuracy", "uar")} for k, v in result.items()}
    rows = ("face_only", "face_only_ferplus", "audio_only", "fused")
    key = " · ".join(f"{k} {result[k]['accuracy']:.2f}" for k in rows if k in result)
    return metrics, f"test accuracy {key}"


def exported(folder: Path) -> tuple[dict, str]:
    """The rows and the int8 gate of the export's report.json."""
    report = json.loads((folder / "report.json").read_text())
    rows = {r.pop("artifact"): r for r in report["rows"]}
    ok = sum(r["status"] == "ok" for r in rows.values())
    gate = "int8 gate passed" if report["gate"]["passed"] else "int8 gate failed"
    return {"rows": rows, "gate": report["gate"]}, f"{ok}/{len(rows)} artifacts · {gate}"


def bundled(folder: Path) -> tuple[dict, str]:
    """The artifacts the bundle ships."""
    shipped = sorted(p.name for p in folder.iterdir() if p.is_dir())
    return {"shipped": shipped}, "shipped " + ", ".join(shipped)


OUTCOMES = {"evaluate": evaluated, "export": exported, "bundle": bundled}


def command(step: Step, folder: Path) -> list[str]:
    """The command line of a stage: for a training stage the `emoedge distill` command that
    does the same (the options that differ from its defaults), else the one that runs."""
    options = dict(step.options)
    if step.trains:
        defaults = asdict(TrainConfig())
        changed = {k: v for k, v in options.items() if v != defaults.get(k)}
        return ["emoedge", "distill", "--stage", step.kind, *flags(changed), "--out", str(folder)]
    if step.kind == "evaluate":
        model = options.pop("model")
        json_file = str(folder / "metrics.json")
        return ["emoedge", "evaluate", model, *flags(options), "--json", json_file]
    if step.kind == "export":
        checkpoint = options.pop("checkpoint")
        return ["emoedge", "export", checkpoint, *flags(options), "--out", str(folder)]
    fallback = ["--no-fallback"] if options.get("no_fallback") else []
    return ["python", "-m", "export.bundle", *fallback, options["export"], str(folder)]


def flags(options: dict[str, Any]) -> list[str]:
    """Options as command-line flags (a boolean as its flag, or nothing when it is off)."""
    argv: list[str] = []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            argv += [NEGATED.get(key, flag)] if value != (key in NEGATED) else []
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def machine() -> dict[str, str | int | None]:
    """The device a training stage runs on (as distill.distributed.join chooses it), the
    PyTorch it imports and the rest of distill.provenance.environment."""
    import torch

    cuda = torch.cuda.is_available()
    device = f"cuda ({torch.cuda.get_device_name(0)})" if cuda else "cpu"
    return {**environment(), "device": device, "torch": torch.__version__}


def table(recipe: Recipe, records: dict) -> str:
    """The stages as a Markdown table: status, wall time, device and key metric."""
    lines = [
        f"recipe {recipe.path} · scale {recipe.scale:g} · seed {recipe.seed} · {recipe.out}",
        "",
        "| stage | kind | status | wall time | device | key metric |",
        "|---|---|---|---:|---|---|",
    ]
    for step in recipe.steps:
        r = records.get(step.name)
        if r is None:
            lines.append(f"| {step.name} | {step.kind} | not run | – | – | – |")
            continue
        cells = [step.name, step.kind, r["status"], duration(r["seconds"]), r["device"]]
        lines.append(f"| {' | '.join(cells)} | {r.get('key_metric') or r.get('error', '–')} |")
    return "\n".join(lines)


def duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s" if m else f"{seconds:.1f} s"


def _error_for(code: int) -> type[EmoedgeError]:
    """The error class of an exit code (edge.core.errors), so the recipe exits with it."""
    classes = [EmoedgeError, *EmoedgeError.__subclasses__()]
    return next((c for c in classes if c.exit_code == code), EmoedgeError)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
