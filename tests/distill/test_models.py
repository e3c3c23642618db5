"""Teacher and student on tiny tensors: shapes, sizes, masks, attention, KD, checkpoints."""

from __future__ import annotations

import pytest
import torch

from distill.checkpoint import front_end, load_checkpoint, save_checkpoint
from distill.models import (
    AttentionPool,
    CrossModalAttention,
    MixStyle,
    build_model,
    count_parameters,
    distillation_loss,
)
from edge.audio.frontend import AudioConfig
from edge.core.errors import ModelError
from edge.vision.face import FaceConfig

T = AudioConfig().num_frames


def inputs(b: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, 1, 48, 48, generator=g),
        torch.randn(b, T, 39, generator=g),
        torch.ones(b, 2),
    )


@pytest.fixture(scope="module", params=["teacher", "student", "student-late"])
def model(request):
    torch.manual_seed(0)
    arch, _, fusion = request.param.partition("-")
    return build_model(arch, {"fusion": fusion} if fusion else None).eval()


def test_logits_shape(model) -> None:
    face, audio, mask = inputs(3)
    assert model(face, audio, mask).shape == (3, 7)


def test_sizes() -> None:
    assert 5.0e6 < count_parameters(build_model("teacher")) < 6.5e6  # the seed's ~5.7 M
    assert count_parameters(build_model("student")) <= 300_000
    assert count_parameters(build_model("student", {"fusion": "late"})) <= 300_000


def test_masked_modality_is_ignored(model) -> None:
    face, audio, _ = inputs(4)
    other_face, other_audio, _ = inputs(4, seed=1)
    face_only = torch.tensor([[1.0, 0.0]] * 4)
    audio_only = torch.tensor([[0.0, 1.0]] * 4)
    with torch.no_grad():
        torch.testing.assert_close(
            model(face, audio, face_only), model(face, other_audio, face_only)
        )
        torch.testing.assert_close(
            model(face, audio, audio_only), model(other_face, audio, audio_only)
        )
        assert not torch.allclose(
            model(face, audio, torch.ones(4, 2)), model(face, other_audio, torch.ones(4, 2))
        )


def test_samples_do_not_mix_across_the_batch(model) -> None:
    """The seed's Q @ K.T attended across the batch; each sample must only see its own audio."""
    face, audio, mask = inputs(4)
    with torch.no_grad():
        base = model(face, audio, mask)
        changed = audio.clone()
        changed[2] = torch.randn(T, 39)
        out = model(face, changed, mask)
    torch.testing.assert_close(out[[0, 1, 3]], base[[0, 1, 3]])
    assert not torch.allclose(out[2], base[2])


def test_attention_is_over_time_steps_of_one_sample() -> None:
    attn = CrossModalAttention(visual_dim=8, audio_dim=6, dim=4)
    visual, steps = torch.randn(3, 8), torch.randn(3, 11, 6)
    attended, weights = attn(visual, steps, torch.ones(3, 1))
    assert attended.shape == (3, 4) and weights.shape == (3, 11)
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    expected = torch.einsum("bt,btd->bd", weights, attn.value(steps))
    torch.testing.assert_close(attended, expected)


def test_attention_pool_is_over_time_steps_of_one_sample_and_ignores_the_face() -> None:
    torch.manual_seed(0)
    pool = AttentionPool(audio_dim=6, dim=4)
    torch.nn.init.normal_(pool.query)
    steps = torch.randn(3, 11, 6)
    attended, weights = pool(torch.randn(3, 8), steps, torch.ones(3, 1))
    again, _ = pool(torch.randn(3, 8), steps, torch.zeros(3, 1))
    torch.testing.assert_close(attended, again)
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    torch.testing.assert_close(attended, torch.einsum("bt,btd->bd", weights, pool.value(steps)))
    scores = pool.key(steps) @ pool.query / 2.0  # scale 1/sqrt(4)
    torch.testing.assert_close(weights, torch.softmax(scores, 1))


def test_missing_face_uses_the_learned_query() -> None:
    attn = CrossModalAttention(visual_dim=8, audio_dim=6, dim=4)
    steps = torch.randn(2, 5, 6)
    a, _ = attn(torch.randn(2, 8), steps, torch.zeros(2, 1))
    b, _ = attn(torch.randn(2, 8), steps, torch.zeros(2, 1))
    torch.testing.assert_close(a, b)


def test_distillation_loss() -> None:
    labels = torch.tensor([0, 3, 6])
    logits = torch.randn(3, 7)
    assert distillation_loss(logits, logits, labels, 4.0, 1.0).item() == pytest.approx(0, abs=1e-6)
    hard = torch.nn.functional.cross_entropy(logits, labels)
    assert distillation_loss(logits, torch.randn(3, 7), labels, 4.0, 0.0).item() == pytest.approx(
        hard.item()
    )
    far = distillation_loss(logits, -logits * 5, labels, 4.0, 1.0)
    assert far.item() > 0.1


def test_checkpoint_round_trip(tmp_path, model) -> None:
    arch = "teacher" if count_parameters(model) > 1e6 else "student"
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, arch, AudioConfig(), FaceConfig(), {"val": {"fused": 1.0}})
    loaded, meta = load_checkpoint(path)
    face, audio, mask = inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(face, audio, mask), model(face, audio, mask), atol=2e-2, rtol=1e-2
        )  # fp16-stored weights
    assert meta["arch"] == arch and meta["metrics"] == {"val": {"fused": 1.0}}
    assert front_end(meta) == (AudioConfig(), FaceConfig())


def test_bad_checkpoints_are_refused(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not an emoedge checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


DEFAULT_BLOCKS = [[64, 2], [64, 1], [128, 2], [128, 1], [192, 2], [192, 1]]


@pytest.mark.parametrize(
    ("blocks", "new_block"),
    [
        ([*DEFAULT_BLOCKS, [192, 1]], 9),  # appended
        ([[64, 2], [64, 1], [64, 1], [128, 2], [128, 1], [192, 2], [192, 1]], 5),  # inserted
    ],
    ids=["appended", "inserted"],
)
def test_a_deeper_face_starts_close_to_the_trained_network(
    blocks: list[list[int]], new_block: int
) -> None:
    """A student with one more residual face block, initialised from a trained one, starts
    from its function: every trained block keeps its weights at its new place (weights_for)
    and the new block's residual branch starts near zero (start_near_identity)."""
    from distill.models import RESIDUAL_INIT_SCALE
    from distill.run import copy_matching_weights, weights_for

    torch.manual_seed(0)
    base = build_model("student", {"fusion": "late"})
    faces = inputs(64)[0]
    for module in base.modules():  # BatchNorm statistics of these faces, as after training
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None
    with torch.no_grad():
        base.face(faces)
    deeper = build_model("student", {"fusion": "late", "face_blocks": blocks})
    fresh = copy_matching_weights(weights_for(base, deeper), deeper)
    assert fresh and all(name.startswith(f"face.features.{new_block}.") for name in fresh)
    new_scale = deeper.face.features[new_block].block[4].weight
    assert torch.all(new_scale == RESIDUAL_INIT_SCALE)

    def change() -> float:  # of the face feature, relative
        with torch.no_grad():
            before, after = base.eval().face(faces), deeper.eval().face(faces)
        return float((after - before).norm() / before.norm())

    assert change() < 0.02
    new_scale.data.fill_(1.0)  # the same block started at full scale changes the function
    assert change() > 0.1


def test_face_block_positions_accepts_only_inserted_residual_blocks() -> None:
    """A deepening inserts blocks that keep the width at stride 1; anything else (a new
    stride, a new width, a block removed or reordered) is not one, and its weights keep their
    names."""
    from distill.models import face_block_positions

    old = ((64, 2), (128, 2))
    assert face_block_positions(32, old, old) == [0, 1]
    assert face_block_positions(32, old, ((32, 1), (64, 2), (64, 1), (128, 2))) == [1, 3]
    assert face_block_positions(32, old, ((64, 2), (64, 2), (128, 2))) is None  # a stride
    assert face_block_positions(32, old, ((64, 2), (96, 1), (128, 2))) is None  # a width
    assert face_block_positions(32, old, ((64, 2),)) is None  # a block removed
    assert face_block_positions(32, old, ((128, 2), (64, 2))) is None  # reordered
    assert face_block_positions(16, old, ((32, 1), (64, 2), (128, 2))) is None  # not the stem's


def test_flip_average_predicts_the_mean_of_a_face_and_its_mirror_image() -> None:
    """face_flip_average: at inference the face feature is the mean over the face and its
    mirror image (so both give the same output); training sees the face as it is."""
    torch.manual_seed(0)
    plain = build_model("student", {"fusion": "late"})
    flipping = build_model("student", {"fusion": "late", "face_flip_average": True})
    flipping.load_state_dict(plain.state_dict())
    faces = inputs(4)[0]
    with torch.no_grad():
        plain.eval(), flipping.eval()
        mean = (plain.face(faces) + plain.face(faces.flip(-1))) / 2
        torch.testing.assert_close(flipping.face(faces), mean)
        torch.testing.assert_close(flipping.face(faces.flip(-1)), mean)
        assert not torch.allclose(plain.face(faces), mean)
        plain.train(), flipping.train()
        torch.manual_seed(1)
        trained = plain.face(faces)
        torch.manual_seed(1)
        torch.testing.assert_close(flipping.face(faces), trained)


def test_mixstyle_mixes_each_channels_statistics_over_time_in_training_only() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 4, 50) * torch.rand(6, 4, 1) * 3 + torch.randn(6, 4, 1) * 2
    mix = MixStyle(p=1.0, alpha=0.5)
    torch.testing.assert_close(mix.eval()(x), x)
    y = mix.train()(x)
    mean_x, mean_y = x.mean(2), y.mean(2)
    assert not torch.allclose(mean_y, mean_x, atol=1e-3)
    # every output mean lies between the sample's own and another sample's (a convex mix)
    low, high = mean_x.min(0).values - 1e-4, mean_x.max(0).values + 1e-4
    assert bool(((mean_y >= low) & (mean_y <= high)).all())

    # the content (the normalised shape over time) is kept
    def standardised(t: torch.Tensor) -> torch.Tensor:
        return (t - t.mean(2, keepdim=True)) / t.std(2, keepdim=True)

    torch.testing.assert_close(standardised(y), standardised(x), atol=1e-3, rtol=1e-3)
    same = x[:1].repeat(6, 1, 1)  # one style in the whole batch: nothing to mix
    torch.testing.assert_close(mix(same), same, atol=1e-4, rtol=1e-4)
    assert MixStyle(p=0.0).train()(x) is x


def test_the_students_voice_mixes_styles_only_while_training() -> None:
    torch.manual_seed(0)
    model = build_model("student", {"fusion": "late"})
    keys = set(model.state_dict())
    _, audio, _ = inputs(4)
    model.eval()
    with torch.no_grad():
        before = model.audio(audio)
        model.audio.mixstyle.p = 1.0
        torch.testing.assert_close(model.audio(audio), before)  # eval: no mixing
        model.train()
        changed = model.audio(audio)
    assert not torch.allclose(changed, before)
    assert set(model.state_dict()) == keys  # no weights: checkpoints and exports unchanged
