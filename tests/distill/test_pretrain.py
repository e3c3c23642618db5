"""Training stages: face-only and audio-only pre-training, --init / --init-audio, late fusion,
--freeze-face / --freeze-audio and KD without the face-only samples; tiny models and tiny
generated corpora."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel

from distill.calibrate import fit_fusion, fit_temperature, gate_weights
from distill.checkpoint import load_checkpoint
from distill.config import TrainConfig
from distill.fused import batch_loss
from distill.models import RELIABILITY_UNIT, build_model, distillation_loss
from distill.pretrain import GradientReversal, VoiceObjectives, class_weights
from distill.run import warmup_ema
from edge.core.errors import DataError
from tests.fixtures_export import TINY, make_checkpoint, run_emoedge
from tests.tiny_corpora import Corpora

MODELS = [("student", "concat"), ("student", "late"), ("teacher", None)]


@pytest.mark.parametrize("modality", ["face", "audio"])
@pytest.mark.parametrize(("arch", "fusion"), MODELS)
def test_single_modality_logits_are_the_models_output_with_the_other_masked(
    arch: str, fusion: str | None, modality: str
) -> None:
    torch.manual_seed(0)
    model = build_model(arch, TINY[arch] | ({"fusion": fusion} if fusion else {})).eval()
    faces = torch.randn(5, 1, 48, 48)
    audio = torch.randn(5, 298, 39)
    face_present = modality == "face"
    mask = torch.tensor([[float(face_present), float(not face_present)]]).expand(5, 2)
    with torch.no_grad():
        own = model.face_logits(faces) if face_present else model.audio_logits(audio)
        torch.testing.assert_close(own, model(faces, audio, mask))


def test_class_weights() -> None:
    labels = np.array([0] * 8 + [1] * 2 + [3] * 2)
    assert torch.equal(class_weights(labels, 0.0)[[0, 1, 3]], torch.ones(3))
    w = class_weights(labels, 1.0)
    counts = torch.tensor([8.0, 2.0, 0, 2.0, 0, 0, 0])
    per_class = w * counts
    assert torch.allclose(per_class[[0, 1, 3]], per_class[0].expand(3))  # balanced
    assert w[2] == 0 and w[4:].eq(0).all()  # absent classes
    assert torch.isclose((w * counts).sum() / counts.sum(), torch.tensor(1.0))  # mean 1


def test_batch_loss_skips_the_teacher_on_face_only_samples() -> None:
    torch.manual_seed(0)
    teacher = build_model("teacher", TINY["teacher"]).eval()
    inputs = (torch.randn(6, 1, 48, 48), torch.randn(6, 298, 39), torch.ones(6, 2))
    inputs[2][:2, 1] = 0  # two face-only samples
    logits, labels = torch.randn(6, 7), torch.tensor([0, 1, 2, 3, 4, 5])
    cfg = TrainConfig(label_smoothing=0.0)
    with torch.no_grad():
        teacher_logits = teacher(*inputs)

    def kd(sl: slice) -> torch.Tensor:
        return distillation_loss(logits[sl], teacher_logits[sl], labels[sl], 4.0, 0.7)

    torch.testing.assert_close(batch_loss(logits, labels, teacher, inputs, cfg), kd(slice(None)))
    cfg.kd_face_only = False
    ce = torch.nn.functional.cross_entropy(logits[:2], labels[:2])
    expected = (2 * ce + 4 * kd(slice(2, None))) / 6
    torch.testing.assert_close(batch_loss(logits, labels, teacher, inputs, cfg), expected)
    face_only = tuple(x[:2] for x in inputs)
    torch.testing.assert_close(batch_loss(logits[:2], labels[:2], teacher, face_only, cfg), ce)
    plain = batch_loss(logits, labels, None, inputs, cfg)
    torch.testing.assert_close(plain, torch.nn.functional.cross_entropy(logits, labels))


def face_state(path) -> dict[str, torch.Tensor]:
    model, _ = load_checkpoint(path)
    return {k: v for k, v in model.state_dict().items() if k.startswith("face.")}


def test_face_stage_resumes_and_the_fused_stage_starts_from_it(
    tiny_corpora: Corpora, tmp_path
) -> None:
    init = make_checkpoint(tmp_path / "init.pt", "student")
    face = tmp_path / "face"
    common = ["--arch", "student", "--batch-size", "8", "--workers", "0", *tiny_corpora.args()]
    stage = ["--stage", "face", "--out", face, "--class-balance", "0.5", "--init", init]
    assert run_emoedge("distill", *common, *stage, "--epochs", "2") == 0
    assert run_emoedge("distill", *common, *stage, "--epochs", "3", "--resume") == 0
    history = json.loads((face / "history.json").read_text())
    assert [(h["epoch"], h["stage"]) for h in history] == [(1, "face"), (2, "face"), (3, "face")]
    _, meta = load_checkpoint(face / "best.pt")
    assert meta["train_config"]["stage"] == "face" and "face_only" in meta["metrics"]["val"]

    fused = tmp_path / "fused"
    teacher = make_checkpoint(tmp_path / "teacher.pt", "teacher")
    args = ["--init", face / "best.pt", "--freeze-face", "--out", fused, "--epochs", "1"]
    args += ["--teacher", teacher, "--no-kd-face-only"]
    assert run_emoedge("distill", *common, *args) == 0
    before, after = face_state(face / "best.pt"), face_state(fused / "best.pt")
    assert before.keys() == after.keys()
    for name, value in before.items():  # weights and BatchNorm statistics
        assert torch.equal(value, after[name]), name


def test_init_from_another_architecture_is_a_usage_error(
    tiny_corpora: Corpora, tmp_path, capsys
) -> None:
    teacher = make_checkpoint(tmp_path / "teacher.pt", "teacher")
    code = run_emoedge(
        "distill", "--arch", "student", "--init", teacher, "--out", tmp_path, *tiny_corpora.args()
    )
    assert code == 2
    assert "is a teacher checkpoint, not student" in capsys.readouterr().err


def test_late_fusion_is_each_calibrated_branch_alone_and_a_certainty_gated_sum() -> None:
    torch.manual_seed(0)
    head = build_model("student", TINY["student"] | {"fusion": "late"}).head.eval()
    with torch.no_grad():
        head.log_temperature.copy_(torch.tensor([2.0, 0.5]).log())
        head.reliability.copy_(torch.tensor([[0.3, 1.0, -0.5], [0.1, -1.0, 2.0]]))
        head.fused_bias.copy_(torch.arange(7.0))
        visual, attended = torch.randn(4, 16), torch.randn(4, 8)

        def out(mask: list[float]) -> torch.Tensor:
            return head(visual, attended, torch.tensor([mask]).expand(4, 2))

        face, voice = out([1.0, 0.0]), out([0.0, 1.0])
        torch.testing.assert_close(face, torch.log_softmax(head.face_logits(visual) / 2.0, 1))
        torch.testing.assert_close(voice, torch.log_softmax(head.audio_logits(attended) / 0.5, 1))
        entropy = [-(x.exp() * x).sum(1, keepdim=True) / np.log(7) for x in (face, voice)]
        features = torch.cat([torch.ones(4, 1), 1 - entropy[0], 1 - entropy[1]], 1)
        gates = torch.nn.functional.softplus(features @ head.reliability.T)
        expected = gates[:, :1] * face + gates[:, 1:] * voice + torch.arange(7.0)
        torch.testing.assert_close(out([1.0, 1.0]), expected)
        torch.testing.assert_close(out([0.0, 0.0]), torch.zeros(4, 7))


def state(path, prefix: str) -> dict[str, torch.Tensor]:
    model, _ = load_checkpoint(path)
    return {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}


def test_audio_stage_and_joining_separately_trained_paths(tiny_corpora: Corpora, tmp_path) -> None:
    init = make_checkpoint(tmp_path / "init.pt", "student", fusion="concat")
    common = ["--arch", "student", "--batch-size", "8", "--workers", "0", *tiny_corpora.args()]
    face, audio, fused = tmp_path / "face", tmp_path / "audio", tmp_path / "fused"
    late = ["--init", init, "--fusion", "late", "--epochs", "1"]
    assert run_emoedge("distill", *common, *late, "--stage", "face", "--out", face) == 0
    stage = [*late, "--stage", "audio", "--out", audio, "--audio-repeats", "2"]
    stage += ["--audio-mixstyle", "0.5"]
    assert run_emoedge("distill", *common, *stage) == 0
    assert run_emoedge("distill", *common, *stage, "--epochs", "2", "--resume") == 0
    history = json.loads((audio / "history.json").read_text())
    assert [(h["epoch"], h["stage"]) for h in history] == [(1, "audio"), (2, "audio")]
    _, meta = load_checkpoint(audio / "best.pt")
    assert meta["config"]["fusion"] == "late" and "audio_only" in meta["metrics"]["val"]
    # the audio stage never touches the face path (init.pt holds fp32, best.pt fp16 weights)
    before, after = state(init, "face."), state(audio / "best.pt", "face.")
    assert all(torch.equal(v.half().float(), after[k]) for k, v in before.items())

    args = ["--init", face / "best.pt", "--init-audio", audio / "best.pt", "--out", fused]
    args += ["--freeze-face", "--freeze-audio", "--epochs", "1"]
    assert run_emoedge("distill", *common, *args) == 0
    _, fused_meta = load_checkpoint(fused / "best.pt")
    assert fused_meta["config"]["fusion"] == "late"
    for source, prefix in ((face, "face."), (audio, "audio.")):  # frozen: weights and BN stats
        before, after = state(source / "best.pt", prefix), state(fused / "best.pt", prefix)
        assert before.keys() == after.keys() and before
        for name, value in before.items():
            assert torch.equal(value, after[name]), name


@pytest.mark.parametrize(("modality", "other"), [("audio", "face"), ("face", "audio")])
def test_a_single_modality_stage_leaves_the_other_modalitys_logits_as_they_were(
    tiny_corpora: Corpora, tmp_path, modality: str, other: str
) -> None:
    """Each modality's stage computes the other's logits under a zero mask (zero gradients):
    even a strong weight decay must not shrink them."""
    init = make_checkpoint(tmp_path / "init.pt", "student", fusion="late")
    args = ["--arch", "student", "--init", init, "--stage", modality, "--epochs", "1"]
    args += ["--batch-size", "8", "--workers", "0", "--weight-decay", "0.5", "--lr", "0.05"]
    assert run_emoedge("distill", *args, "--out", tmp_path / "run", *tiny_corpora.args()) == 0
    before, after = state(init, ""), state(tmp_path / "run" / "best.pt", "")

    def unchanged(prefix: str) -> list[bool]:  # init.pt holds fp32, best.pt fp16 weights
        return [
            torch.equal(v.half().float(), after[k])
            for k, v in before.items()
            if k.startswith(prefix)
        ]

    for prefix in (f"{other}.", f"head.{other}_logits."):
        assert unchanged(prefix) and all(unchanged(prefix))
    assert not all(unchanged(f"head.{modality}_logits."))  # while its own logits did train


def test_fusion_and_init_audio_misuse_are_usage_errors(
    tiny_corpora: Corpora, tmp_path, capsys
) -> None:
    ckpt = make_checkpoint(tmp_path / "student.pt", "student")
    out = ["--out", tmp_path / "run"]
    assert (
        run_emoedge("distill", "--arch", "teacher", "--fusion", "late", *out, *tiny_corpora.args())
        == 2
    )
    assert "--fusion applies to the student only" in capsys.readouterr().err
    assert run_emoedge("distill", "--init-audio", ckpt, *out, *tiny_corpora.args()) == 2
    assert "--init-audio needs --init" in capsys.readouterr().err
    teacher = make_checkpoint(tmp_path / "teacher.pt", "teacher")
    assert (
        run_emoedge("distill", "--init", ckpt, "--init-audio", teacher, *out, *tiny_corpora.args())
        == 2
    )
    assert "is a teacher checkpoint, not student" in capsys.readouterr().err


def test_checkpoints_load_without_unpickling_objects(tmp_path) -> None:
    from distill.checkpoint import save_checkpoint
    from edge.audio.frontend import AudioConfig
    from edge.vision.face import FaceConfig

    model = build_model("student", TINY["student"])
    metrics = {"val": {"fused": {"accuracy": np.float64(61.5), "confusion": np.eye(2, dtype=int)}}}
    save_checkpoint(tmp_path / "m.pt", model, "student", AudioConfig(), FaceConfig(), metrics)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)  # raises on any pickled object
    assert payload["metrics"]["val"]["fused"] == {"accuracy": 61.5, "confusion": [[1, 0], [0, 1]]}
    for committed in ("student", "teacher"):
        torch.load(f"distill/checkpoints/{committed}.pt", weights_only=True)


def test_fit_fusion_trusts_the_informative_modality() -> None:
    gen = torch.Generator().manual_seed(0)
    head = build_model("student", TINY["student"] | {"fusion": "late"}).head
    labels = torch.randint(0, 7, (2000,), generator=gen)
    onehot = torch.nn.functional.one_hot(labels, 7).float()
    face = torch.log_softmax(2.0 * onehot + torch.randn(2000, 7, generator=gen), 1)
    voice = torch.log_softmax(8.0 * torch.randn(2000, 7, generator=gen) + 0.5 * onehot, 1)
    weights = fit_fusion(head, face, voice, labels)
    assert weights.shape == (2, 3)
    assert torch.equal(head.reliability, torch.tensor([[RELIABILITY_UNIT, 0.0, 0.0]] * 2))
    with torch.no_grad():
        head.reliability.copy_(weights)
        gates = head.gates(face, voice).mean(0)
        after = torch.nn.functional.cross_entropy(
            head.fuse(face, voice, torch.ones(2000, 2)), labels
        )
    assert gates[0] > 0.5 and gates[1] < 0.2 * gates[0]
    before = torch.nn.functional.cross_entropy(face + voice, labels)
    assert after < before


def test_weighted_fit_fusion_is_the_fit_on_repeated_pairs() -> None:
    gen = torch.Generator().manual_seed(1)
    head = build_model("student", TINY["student"] | {"fusion": "late"}).head
    labels = torch.randint(0, 7, (300,), generator=gen)
    face, voice = (torch.log_softmax(torch.randn(300, 7, generator=gen), 1) for _ in range(2))
    weights = torch.cat([torch.ones(200), torch.full((100,), 3.0)])
    weighted = fit_fusion(head, face, voice, labels, sample_weights=weights)
    repeated = torch.cat([torch.arange(200)] + [torch.arange(200, 300)] * 3)
    plain = fit_fusion(head, face[repeated], voice[repeated], labels[repeated])
    torch.testing.assert_close(weighted, plain, atol=1e-3, rtol=1e-3)


def _pairs(voice_signal: float) -> tuple[torch.Tensor, ...]:
    """Log-probabilities of a fair face (57 % accurate) and of a voice whose accuracy grows
    with `voice_signal` (18 % at 0.2, 85 % at 2.5), on 3,000 pairs."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 7, (3000,), generator=gen)
    onehot = torch.nn.functional.one_hot(labels, 7).float()
    face = torch.log_softmax(1.5 * onehot + torch.randn(3000, 7, generator=gen), 1)
    voice = torch.log_softmax(2 * (voice_signal * onehot + torch.randn(3000, 7, generator=gen)), 1)
    return face, voice, labels


def test_guarded_fusion_weighs_shuffled_voices_until_a_silent_voice_costs_little() -> None:
    from distill.calibrate import GUARD_ALLOWANCE, cost_to_the_face, fit_guarded_fusion

    head = build_model("student", TINY["student"] | {"fusion": "late"}).head
    face, voice, labels = _pairs(voice_signal=2.5)
    weights, record = fit_guarded_fusion(head, face, voice, labels)
    cost, chosen = record["cost_to_the_face"], record["shuffled_voice_weight"]
    # a strong, sure voice fitted 1 : 1 drags the face down when it is shuffled ...
    assert cost[1] > GUARD_ALLOWANCE and chosen > 1 and record["met"]
    # ... the chosen weight is the first within the allowance, and the returned gates are its fit
    assert list(cost) == [w for w in (1, 2, 4, 8, 16, 32) if w <= chosen]
    assert cost[chosen] <= GUARD_ALLOWANCE
    assert cost_to_the_face(head, weights, face, voice, labels) == cost[chosen]
    # the guarded fusion still uses the voice where it is real
    with torch.no_grad(), gate_weights(head, weights):
        fused = head.fuse(face, voice, torch.ones(len(face), 2)).argmax(1)
    assert (fused == labels).float().mean() > (face.argmax(1) == labels).float().mean() + 0.05

    # a weak voice costs the face nothing even at 1 : 1
    _, weak = fit_guarded_fusion(head, *_pairs(voice_signal=0.2))
    assert weak["shuffled_voice_weight"] == 1 and weak["met"]


def test_fit_temperature_recovers_the_temperature_of_overconfident_logits() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 7, (4000,), generator=gen)
    calibrated = torch.randn(4000, 7, generator=gen) + 1.5 * torch.nn.functional.one_hot(labels, 7)
    sampled = torch.distributions.Categorical(logits=calibrated).sample()
    assert abs(fit_temperature(3.0 * calibrated, sampled) - 3.0) < 0.3


def test_calibrate_stage_fits_temperatures_and_fusion_on_validation(
    tiny_corpora: Corpora, tmp_path, capsys
) -> None:
    init = make_checkpoint(tmp_path / "init.pt", "student")
    common = ["--arch", "student", "--batch-size", "8", "--workers", "0", *tiny_corpora.args()]
    late = tmp_path / "late"
    args = ["--init", init, "--fusion", "late", "--stage", "face", "--epochs", "1"]
    assert run_emoedge("distill", *common, *args, "--out", late) == 0
    out = tmp_path / "calibrated"
    args = ["--init", late / "best.pt", "--stage", "calibrate", "--out", out]
    assert run_emoedge("distill", *common, *args) == 0
    model, meta = load_checkpoint(out / "best.pt")
    (record,) = meta["history"]
    assert record["stage"] == "calibrate" and "fused" in meta["metrics"]["val"]
    assert set(record["ece"]) == {"face_before", "face_after", "voice_before", "voice_after"}
    guard = record["fusion_guard"]
    assert list(guard["cost_to_the_face"])[-1] == str(guard["shuffled_voice_weight"])
    temperatures = model.head.log_temperature.exp()
    assert (temperatures > 0).all() and not torch.equal(temperatures, torch.ones(2))
    # checkpoints store fp16: compare at its resolution (11 significant bits of log T)
    log_t = torch.tensor(record["temperatures"]).log()
    torch.testing.assert_close(model.head.log_temperature, log_t, atol=5e-3, rtol=1e-3)
    reliability = torch.tensor(record["reliability"])
    torch.testing.assert_close(model.head.reliability, reliability, atol=5e-3, rtol=1e-3)
    # only the calibration buffers changed
    before, after = state(late / "best.pt", ""), state(out / "best.pt", "")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed <= {"head.log_temperature", "head.reliability"}
    assert not model.head.fused_bias.any() and "fused_bias" not in record

    concat = make_checkpoint(tmp_path / "concat.pt", "student", fusion="concat")
    args = ["--init", concat, "--stage", "calibrate", "--out", tmp_path / "x"]
    assert run_emoedge("distill", *common, *args) == 2
    assert "needs a late-fusion student" in capsys.readouterr().err


def test_calibrate_gives_the_voice_the_temperature_of_speech_never_heard(
    tiny_corpora: Corpora, tmp_path, capsys
) -> None:
    init = make_checkpoint(tmp_path / "init.pt", "student", fusion="late")
    common = ["--arch", "student", "--workers", "0", "--stage", "calibrate", "--init", init]
    common += tiny_corpora.args()
    protocol = tmp_path / "cc"  # what --stage crosscorpus writes
    protocol.mkdir()
    (protocol / "voice-temperature.json").write_text('{"voice_temperature": 2.5}')
    out = tmp_path / "calibrated"
    assert run_emoedge("distill", *common, "--voice-temperature-from", protocol, "--out", out) == 0
    model, meta = load_checkpoint(out / "best.pt")
    (record,) = meta["history"]
    assert record["temperatures"][1] == 2.5
    assert abs(model.head.log_temperature.exp()[1] - 2.5) < 2e-3  # fp16 checkpoint
    fitted = record["temperatures_fitted_on_validation"]["voice"]
    assert fitted > 0 and fitted != 2.5  # recorded beside the one used

    bad = {
        protocol / "voice-temperature.json": '{"voice_temperature": -1}',
        tmp_path / "empty": None,
    }
    for where, text in bad.items():
        if text is None:
            where.mkdir()
        else:
            where.write_text(text)
        code = run_emoedge("distill", *common, "--voice-temperature-from", where, "--out", out)
        err = capsys.readouterr().err
        assert code == DataError.exit_code and "--voice-temperature-from" in err, err
        assert "Traceback" not in err
    args = ["--stage", "audio", "--voice-temperature-from", protocol, "--out", tmp_path / "a"]
    assert run_emoedge("distill", "--init", init, "--workers", "0", *args) == 2
    assert "--stage calibrate uses it" in capsys.readouterr().err


def test_model_config_appends_a_face_block_to_an_init_checkpoint(
    tiny_corpora: Corpora, tmp_path
) -> None:
    ckpt = make_checkpoint(tmp_path / "student.pt", "student", fusion="late")
    blocks = TINY["student"]["face_blocks"] + [[16, 1]]
    out = tmp_path / "longer"
    args = ["--stage", "face", "--init", ckpt, "--out", out, "--epochs", "1", "--workers", "0"]
    config = json.dumps({"face_blocks": blocks})
    assert (
        run_emoedge(
            "distill", "--arch", "student", *args, "--model-config", config, *tiny_corpora.args()
        )
        == 0
    )
    model, meta = load_checkpoint(out / "best.pt")
    assert meta["config"]["face_blocks"] == blocks and meta["config"]["fusion"] == "late"
    assert len(model.face.features) == 3 + len(blocks)


def test_ema_validates_and_saves_the_weight_average_and_resumes_it(
    tiny_corpora: Corpora, tmp_path
) -> None:
    ckpt = make_checkpoint(tmp_path / "student.pt", "student", fusion="late")
    out = tmp_path / "ema"
    args = ["--stage", "face", "--init", ckpt, "--out", out, "--workers", "0", "--ema", "0.9"]
    args += ["--batch-size", "8"]
    assert (
        run_emoedge("distill", "--arch", "student", *args, "--epochs", "1", *tiny_corpora.args())
        == 0
    )
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["average"]["n_averaged"] > 1
    best, _ = load_checkpoint(out / "best.pt")
    for name, value in best.state_dict().items():  # best.pt holds the average (fp16-rounded)
        average = last["average"][f"module.{name}"].to(value.dtype)
        torch.testing.assert_close(value, average, rtol=1e-3, atol=1e-3)
    weights = last["model"]["face.proj.0.weight"]  # the average is not the model's weights
    assert not torch.equal(last["average"]["module.face.proj.0.weight"], weights)

    assert (
        run_emoedge(
            "distill", "--arch", "student", *args, "--epochs", "2", "--resume", *tiny_corpora.args()
        )
        == 0
    )
    resumed = torch.load(out / "last.pt", weights_only=True)["average"]["n_averaged"]
    assert resumed == 2 * last["average"]["n_averaged"]


def test_the_weight_average_warms_up_so_that_a_short_run_is_not_its_initial_weights() -> None:
    model = torch.nn.Linear(3, 2)
    start = model.weight.detach().clone()
    average = AveragedModel(model, multi_avg_fn=warmup_ema(0.999), use_buffers=True)
    expected = start.clone()
    for n in range(50):  # the weights move by 1 per step; the first update copies them
        with torch.no_grad():
            model.weight.add_(1.0)
        average.update_parameters(model)
        decay = 0.0 if n == 0 else min(0.999, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * model.weight.detach()
    moved = average.module.weight.detach() - start
    torch.testing.assert_close(moved, expected - start)
    assert torch.all(moved > 40)  # a fixed decay of 0.999 would have moved it by about 2


def test_ema_decay_out_of_range_is_a_usage_error(tiny_corpora: Corpora, tmp_path, capsys) -> None:
    out = ["--out", tmp_path / "run", "--ema", "1.5", "--epochs", "1"]
    assert run_emoedge("distill", "--arch", "student", *out, *tiny_corpora.args()) == 2
    assert "--ema 1.5: a decay in [0, 1) expected" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--audio-mixstyle", "1.5"], "--audio-mixstyle 1.5: a probability expected"),
        (
            ["--arch", "teacher", "--audio-mixstyle", "0.5"],
            "--audio-mixstyle: only the student's voice (a conv net) mixes styles",
        ),
        (
            ["--stage", "face", "--audio-mixstyle", "0.5"],
            "--audio-mixstyle: the voice's own stages (audio, crosscorpus) use it",
        ),
        (["--audio-encoder-kd", "-1"], "--audio-encoder-kd -1.0: a weight >= 0 expected"),
        (
            ["--stage", "fused", "--audio-encoder-kd", "1"],
            "--audio-encoder-kd: the voice's own stages (audio, crosscorpus) use it",
        ),
        (
            ["--audio-encoder-centre", "speaker"],
            "--audio-encoder-centre needs --audio-encoder-kd (a weight > 0)",
        ),
        (["--audio-adversary", "-0.5"], "--audio-adversary -0.5: a weight >= 0 expected"),
        (
            ["--stage", "face", "--audio-adversary", "1"],
            "--audio-adversary: the voice's own stages (audio, crosscorpus) use it",
        ),
    ],
)
def test_bad_voice_training_option_is_a_usage_error(
    tiny_corpora: Corpora, tmp_path, capsys, args, message
):
    out = ["--out", tmp_path / "run", "--stage", "audio", "--epochs", "1"]
    assert run_emoedge("distill", *out, *args, *tiny_corpora.args()) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{face_blocks", "--model-config: not JSON"),
        ("[1, 2]", "--model-config: a JSON object expected"),
        ('{"face_width": 3}', "unknown student setting(s) face_width; allowed: "),
    ],
)
def test_bad_model_config_is_a_usage_error(
    tiny_corpora: Corpora, tmp_path, capsys, value, message
) -> None:
    out = ["--out", tmp_path / "run", "--model-config", value]
    assert run_emoedge("distill", "--arch", "student", *out, *tiny_corpora.args()) == 2
    assert message in capsys.readouterr().err


def test_face_augment_strength_scales_the_augmentation() -> None:
    """--face-augment 0 leaves only the flip; 0.5 changes faces less than 1."""
    from distill.augment import augment_faces

    faces = torch.randn(64, 1, 48, 48)

    def change(strength: float) -> torch.Tensor:  # per face, the smaller of the two orientations
        out = augment_faces(faces, torch.Generator().manual_seed(1), strength)
        return torch.minimum(
            (out - faces).abs().mean(dim=(1, 2, 3)), (out - faces.flip(3)).abs().mean(dim=(1, 2, 3))
        )

    assert torch.allclose(change(0.0), torch.zeros(64), atol=1e-5)
    assert change(0.5).mean() < change(1.0).mean()
    assert change(0.5).mean() > 0.1


def test_prior_correction_is_chosen_on_validation_and_folded_into_the_face_head() -> None:
    from distill.calibrate import fit_prior_correction
    from distill.pairing import EvalSet
    from edge.vision.face import FaceConfig

    torch.manual_seed(0)
    model = build_model("student", TINY["student"]).eval()
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 255, (60, 48, 48), dtype=np.uint8)
    labels = np.arange(60) % 7
    es = EvalSet("face_only", faces, np.zeros((60, 298, 39), np.float32), np.ones((60, 2)), labels)
    uniform = np.full(7, 1 / 7)
    tau, tried = fit_prior_correction(model, es, FaceConfig(), uniform)
    assert tau == 0.0 and len(set(tried.values())) == 1  # a uniform prior changes nothing
    skewed = np.array([0.7, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05])
    tau, tried = fit_prior_correction(model, es, FaceConfig(), skewed)
    assert tried[tau] == max(tried.values()) and set(tried) >= {0.0, 0.5, 1.0}


def test_the_face_temperature_is_fitted_on_the_ferplus_majority_where_there_are_votes() -> None:
    """The face trains on the crowd's votes: its confidence is calibrated against their majority
    (face_only_ferplus), not against single labels that disagree with them for one face in
    four; without votes, against the single labels."""
    from distill.calibrate import branch_logits, calibrate_model
    from distill.pairing import EvalSet
    from edge.vision.face import FaceConfig

    torch.manual_seed(0)
    model = build_model("student", TINY["student"]).eval()
    rng = np.random.default_rng(0)
    n = 70
    faces = rng.integers(0, 255, (n, 48, 48), dtype=np.uint8)
    audio = rng.standard_normal((n, 298, 39)).astype(np.float32)
    noise = rng.integers(0, 7, n)

    def eval_set(name: str, labels: np.ndarray, mask: tuple[float, float]) -> EvalSet:
        return EvalSet(name, faces, audio, np.tile(np.float32(mask), (n, 1)), labels)

    agreeing = branch_logits(model, eval_set("x", noise, (1, 0)), FaceConfig())[0].argmax(1)
    common = [eval_set("audio_only", noise, (0, 1)), eval_set("fused", noise, (1, 1))]
    with_votes = [eval_set("face_only", noise, (1, 0)), *common]
    with_votes.append(eval_set("face_only_ferplus", agreeing.numpy(), (1, 0)))
    fitted = {}
    for name, sets in (("votes", with_votes), ("labels", [with_votes[0], *common])):
        trial = build_model("student", TINY["student"]).eval()
        trial.load_state_dict(model.state_dict())
        fitted[name] = calibrate_model(trial, sets, FaceConfig())
    assert fitted["votes"]["face_temperature_fitted_on"] == "face_only_ferplus"
    assert fitted["labels"]["face_temperature_fitted_on"] == "face_only"
    # the face agrees with the majority everywhere: sharpened, where random labels flatten it
    face_t = {name: record["temperatures"][0] for name, record in fitted.items()}
    assert face_t["votes"] < 1.0 < face_t["labels"], face_t


def test_branch_logits_are_the_same_computed_in_batches() -> None:
    from distill.calibrate import branch_logits
    from distill.pairing import EvalSet
    from edge.vision.face import FaceConfig

    torch.manual_seed(0)
    model = build_model("student", TINY["student"] | {"fusion": "late"}).eval()
    rng = np.random.default_rng(0)
    es = EvalSet(
        "fused",
        rng.integers(0, 255, (23, 48, 48), dtype=np.uint8),
        rng.normal(size=(23, 298, 39)).astype(np.float32),
        np.ones((23, 2), np.float32),
        np.arange(23) % 7,
    )
    whole = branch_logits(model, es, FaceConfig(), batch_size=64)
    batched = branch_logits(model, es, FaceConfig(), batch_size=5)
    for one, other in zip(whole, batched, strict=True):
        assert one.shape == (23, 7) and torch.allclose(one, other, atol=1e-5)


def test_uninformative_voices_double_the_pairs_with_the_voices_shuffled() -> None:
    from distill.calibrate import with_uninformative_voices

    face = torch.randn(50, 7)
    voice = torch.randn(50, 7)
    labels = torch.arange(50) % 7
    f, v, y = with_uninformative_voices(face, voice, labels)
    assert f.shape == v.shape == (100, 7) and y.shape == (100,)
    assert torch.equal(f[50:], face) and torch.equal(y[50:], labels)
    assert torch.equal(v[:50], voice) and not torch.equal(v[50:], voice)
    assert sorted(map(tuple, v[50:].tolist())) == sorted(map(tuple, voice.tolist()))


def test_a_seeded_voice_stage_is_reproducible(tiny_corpora: Corpora, tmp_path) -> None:
    """The same command and seed give the same weights (fresh voice, augmentation bank,
    batches and style mixing all drawn from the seed), so a difference between two runs of a
    protocol is the change's, not chance's; a fresh voice does not depend on how the --init
    checkpoint's old voice was calibrated (its temperature)."""
    init = make_checkpoint(tmp_path / "init.pt", "student", fusion="late")
    recalibrated = torch.load(init, weights_only=True)
    recalibrated["state_dict"]["head.log_temperature"][1] = 0.14
    recalibrated_path = tmp_path / "recalibrated.pt"
    torch.save(recalibrated, recalibrated_path)
    common = ["--arch", "student", "--batch-size", "8", "--workers", "0", *tiny_corpora.args()]
    stage = ["--reset-audio", "--stage", "audio", "--epochs", "2", "--seed", "3"]
    stage += ["--audio-repeats", "2", "--audio-mixstyle", "0.5", "--threads", "1"]
    for run, start in (("a", init), ("b", recalibrated_path)):
        args = [*common, "--init", start, *stage, "--out", tmp_path / run]
        assert run_emoedge("distill", *args) == 0
    assert load_checkpoint(recalibrated_path)[0].head.log_temperature[1] > 0.1
    a, b = (state(tmp_path / run / "best.pt", "audio.") for run in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())


def test_the_voice_temperature_comes_with_the_audio_path(tmp_path) -> None:
    from distill.run import prepare_model

    def calibrated(name: str, log_t: float):
        path = make_checkpoint(tmp_path / f"{name}.pt", "student", fusion="late")
        saved = torch.load(path, weights_only=True)
        saved["state_dict"]["head.log_temperature"][1] = log_t
        torch.save(saved, path)
        return path

    init, voice = calibrated("init", 0.3), calibrated("voice", -0.2)
    joined = prepare_model(TrainConfig(arch="student", init=str(init), init_audio=str(voice)))
    assert joined.head.log_temperature[1].item() == pytest.approx(-0.2, abs=1e-3)
    fresh = prepare_model(TrainConfig(arch="student", init=str(init), reset_audio=True))
    assert fresh.head.log_temperature[1].item() == 0.0
    kept = prepare_model(TrainConfig(arch="student", init=str(init)))
    assert kept.head.log_temperature[1].item() == pytest.approx(0.3, abs=1e-3)


def test_encoder_matching_adds_the_weighted_cosine_distance() -> None:
    model = build_model("student", TINY["student"]).eval()
    matching = VoiceObjectives(model, encoder_weight=0.5)
    audio = torch.randn(4, 298, 39)
    logits, attended = model.voice(audio)
    torch.testing.assert_close(logits, model.audio_logits(audio))
    projected = matching.aux["projection"](attended).detach()
    _, same = matching(audio, projected * 3)  # the similarity ignores the scale
    _, opposite = matching(audio, -projected)
    torch.testing.assert_close(same, torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(opposite, torch.tensor(1.0), atol=1e-5, rtol=0)  # 0.5 × 2


def test_gradient_reversal_flips_the_gradient_alone() -> None:
    x = torch.randn(5, 3, requires_grad=True)
    y = GradientReversal.apply(x)
    torch.testing.assert_close(y, x)
    (y * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, -torch.arange(3.0).expand(5, 3))


def test_the_corpus_adversary_learns_the_corpus_and_pushes_the_voice_the_other_way() -> None:
    torch.manual_seed(0)
    model = build_model("student", TINY["student"]).eval()
    objectives = VoiceObjectives(model, adversary_weight=2.0, corpora=3)
    audio, corpus = torch.randn(6, 298, 39), torch.tensor([0, 1, 2, 0, 1, 2])
    _, loss = objectives(audio, corpus)
    guess = objectives.aux["adversary"](model.voice(audio)[1])
    torch.testing.assert_close(loss, 2.0 * F.cross_entropy(guess, corpus))
    loss.backward()
    adversary = [p.grad.clone() for p in objectives.aux["adversary"].parameters()]
    voice = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    objectives.zero_grad()
    # the same loss without the reversal: the adversary's gradients are the same, the voice's
    # are exactly the opposite
    plain = 2.0 * F.cross_entropy(objectives.aux["adversary"](model.voice(audio)[1]), corpus)
    plain.backward()
    for before, p in zip(adversary, objectives.aux["adversary"].parameters(), strict=True):
        torch.testing.assert_close(before, p.grad)
    assert voice and all(n.startswith(("audio.", "attention.")) for n in voice)
    for name, grad in voice.items():
        torch.testing.assert_close(grad, -dict(model.named_parameters())[name].grad)


def test_the_voice_stage_trains_a_projection_to_the_speech_encoder_and_resumes_it(
    tiny_corpora: Corpora, tmp_path
) -> None:
    init = make_checkpoint(tmp_path / "init.pt", "student", fusion="late")
    common = ["--arch", "student", "--batch-size", "8", "--workers", "0", *tiny_corpora.args()]
    stage = ["--init", init, "--stage", "audio", "--audio-repeats", "2", "--out", tmp_path / "a"]
    stage += ["--audio-encoder-kd", "1.0", "--epochs", "1"]
    assert run_emoedge("distill", *common, *stage) == 0
    first = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert first["aux"]["projection.weight"].shape == (768, TINY["student"]["attn_dim"])
    assert list(tiny_corpora.cache.glob("speech-encoder-states-*.npz"))
    assert run_emoedge("distill", *common, *stage, "--epochs", "2", "--resume") == 0
    second = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    moved = not torch.equal(first["aux"]["projection.weight"], second["aux"]["projection.weight"])
    assert second["epoch"] == 1 and moved
    _, meta = load_checkpoint(tmp_path / "a" / "best.pt")  # the model alone: no projection
    assert not any("projection" in k for k in build_model("student", meta["config"]).state_dict())


def test_the_voice_stage_matches_whisper_states_standardised_over_the_clips(
    tiny_corpora: Corpora, tmp_path
) -> None:
    """--audio-encoder whisper-base: a projection to its 512 values, targets from the cache's
    Whisper store (the Resemblyzer one is never computed)."""
    from distill.speech_encoder import stored_states

    init = make_checkpoint(tmp_path / "init.pt", "student", fusion="late")
    args = ["--arch", "student", "--batch-size", "8", "--workers", "0", *tiny_corpora.args()]
    args += ["--init", init, "--stage", "audio", "--audio-repeats", "2", "--epochs", "1"]
    args += ["--out", tmp_path / "a", "--audio-encoder-kd", "1.0"]
    args += ["--audio-encoder", "whisper-base", "--audio-encoder-centre", "all"]
    cache = tmp_path / "cache"
    assert run_emoedge("distill", *args, "--cache-dir", cache) == 0
    aux = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["aux"]
    assert aux["projection.weight"].shape == (512, TINY["student"]["attn_dim"])
    assert {v.shape for v in stored_states(cache).values()} == {(512,)}


def test_the_voice_stage_trains_a_corpus_adversary_beside_the_encoder_matching(
    tiny_corpora: Corpora, tmp_path
) -> None:
    init = make_checkpoint(tmp_path / "init.pt", "student", fusion="late")
    two = tiny_corpora.args(tiny_corpora.speech, tiny_corpora.emodb)
    common = ["--arch", "student", "--batch-size", "8", "--workers", "0", "--init", init]
    stage = ["--stage", "audio", "--audio-repeats", "2", "--epochs", "1", "--out", tmp_path / "a"]
    both = ["--audio-encoder-kd", "1.0", "--audio-adversary", "0.5"]
    assert run_emoedge("distill", *common, *stage, *both, *two) == 0
    aux = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["aux"]
    assert aux["projection.weight"].shape == (768, TINY["student"]["attn_dim"])
    assert aux["adversary.2.weight"].shape == (2, TINY["student"]["attn_dim"])  # two corpora
    saved = torch.load(tmp_path / "a" / "best.pt", weights_only=True)["state_dict"]
    assert set(saved) == set(build_model("student", TINY["student"]).state_dict())


def test_a_corpus_adversary_needs_two_corpora(tiny_corpora: Corpora, tmp_path, capsys) -> None:
    init = make_checkpoint(tmp_path / "init.pt", "student", fusion="late")
    args = ["--init", init, "--stage", "audio", "--epochs", "1", "--audio-adversary", "1"]
    args += ["--workers", "0", "--out", tmp_path / "a", *tiny_corpora.args()]
    assert run_emoedge("distill", *args) == 4  # a DataError
    assert "--audio-adversary needs at least two training corpora" in capsys.readouterr().err
