"""FER+ crowd votes: read beside the FER2013 folders, soft training targets by the stated rule,
and the majority label the face rows are also scored against."""

from __future__ import annotations

import numpy as np
import pytest

from distill.cache import Decoded, decode_faces
from distill.corpora import load_corpus
from distill.ferplus import VOTE_COLUMNS, majority_labels, training_targets
from distill.pairing import PairedTrainSet, Rows, build_eval_sets, face_sets
from edge.audio.frontend import AudioConfig
from edge.core.errors import DataError
from edge.core.labels import LABELS
from tests.tiny_corpora import write_fer_folders


def votes(**counts: int) -> np.ndarray:
    return np.array([counts.get(c, 0) for c in VOTE_COLUMNS], dtype=np.int16)


def test_training_targets_follow_the_rule() -> None:
    rows = np.stack(
        [
            votes(happiness=6, surprise=2, contempt=1, unknown=1),  # contempt/unknown dropped
            votes(NF=6, neutral=4),  # not a face: left out
            votes(),  # no FER+ row: the original label
            votes(contempt=7, unknown=3),  # no emotion vote: the original label
        ]
    )
    labels = np.array([0, 0, LABELS.index("sad"), LABELS.index("fear")])
    targets, keep = training_targets(rows, labels)
    assert keep.tolist() == [True, False, True, True]
    expected = np.zeros(7)
    expected[LABELS.index("happy")], expected[LABELS.index("surprise")] = 0.75, 0.25
    assert np.allclose(targets[0], expected)
    assert targets[2].argmax() == LABELS.index("sad") and targets[2].max() == 1.0
    assert targets[3].argmax() == LABELS.index("fear")
    assert np.allclose(targets.sum(1), 1.0)


def decoded(labels: list[int], rows: np.ndarray, data) -> Decoded:
    n = len(labels)
    text = np.array(["train"] * n)
    return Decoded(data, np.array(labels), text, text, text, rows)


def speech_clips(labels: list[int]) -> Decoded:
    """One second of quiet noise per label, without votes."""
    rng = np.random.default_rng(0)
    waves = [rng.normal(0, 0.1, 16000).astype(np.float32) for _ in labels]
    return decoded(labels, np.zeros((len(labels), len(VOTE_COLUMNS)), np.int16), waves)


def test_the_fused_stage_pairs_a_face_by_a_class_drawn_from_its_votes() -> None:
    happy, sad, angry, fear = (LABELS.index(c) for c in ("happy", "sad", "angry", "fear"))
    faces = decoded(
        [happy, sad, angry, happy],
        np.stack(
            [
                votes(happiness=5, anger=3, fear=2),  # fear has no clips: its votes dropped
                votes(),  # no votes: its label
                votes(NF=6, anger=4),  # not a face: left out
                votes(fear=10),  # fear alone is dropped entirely: its label
            ]
        ),
        np.zeros((4, 48, 48), np.uint8),
    )
    speech = speech_clips([happy, sad, angry, happy, sad, angry])
    paired = PairedTrainSet(faces, speech, AudioConfig())
    assert len(paired) == 3
    drawn: dict[int, list[int]] = {0: [], 1: [], 3: []}
    for epoch in range(150):
        paired.epoch = epoch
        for i in range(len(paired)):
            face, _, label = paired[i]
            drawn[face].append(label)
    assert set(drawn[1]) == {sad} and set(drawn[3]) == {happy}
    share = np.bincount(drawn[0], minlength=7)[[happy, angry]] / len(drawn[0])
    assert set(drawn[0]) == {happy, angry}
    assert abs(share[0] - 5 / 8) < 0.15 and abs(share[1] - 3 / 8) < 0.15
    unvoted_fear = decoded([fear], votes()[None], np.zeros((1, 48, 48), np.uint8))
    with pytest.raises(ValueError, match=f"no training clips for classes \\[{fear}\\]"):
        PairedTrainSet(unvoted_fear, speech, AudioConfig())


def test_evaluation_pairs_faces_by_their_fer_label_and_again_by_their_majority() -> None:
    happy, sad, angry, fear = (LABELS.index(c) for c in ("happy", "sad", "angry", "fear"))
    face_labels = [happy, happy, sad, sad, angry, fear]
    faces = decoded(
        face_labels,
        np.stack(
            [
                votes(happiness=8, neutral=2),  # agrees with its label
                votes(sadness=7, happiness=3),  # labelled happy, the crowd says sad
                votes(happiness=6, sadness=4),  # labelled sad, the crowd says happy
                votes(sadness=5, anger=5),  # tie: never drawn by majority
                votes(anger=9, fear=1),
                votes(),  # no votes: never drawn by majority
            ]
        ),
        # each face's pixels are its index, so that a pair names the face it drew
        np.repeat(np.arange(6, dtype=np.uint8), 48 * 48).reshape(6, 48, 48),
    )
    majority = {0: happy, 1: sad, 2: happy, 4: angry}
    speech = speech_clips([happy, sad, angry, fear, happy, sad])
    speech.corpora = np.array(["ravdess"] * 4 + ["emodb"] * 2)
    sets = {s.name: s for s in build_eval_sets(faces, speech, AudioConfig(), 5, ferplus_pairs=True)}
    assert "fused_ferplus" not in {s.name for s in build_eval_sets(faces, speech, AudioConfig(), 5)}
    drawn = {name: sets[name].faces[:, 0, 0].astype(int) for name in ("fused", "fused_ferplus")}
    assert [face_labels[f] for f in drawn["fused"]] == sets["fused"].labels.tolist()
    assert len(sets["fused"]) == 6 * 5 and not sets["fused"].excluded
    # the fear clip has no face whose majority is fear: left out of the FER+ pairs and counted
    assert [majority[f] for f in drawn["fused_ferplus"]] == sets["fused_ferplus"].labels.tolist()
    assert set(drawn["fused_ferplus"]) == {0, 1, 2, 4} and len(drawn["fused_ferplus"]) == 5 * 5
    assert sets["fused_ferplus"].excluded == {"clips_without_faces_of_their_class": 1}
    assert sets["fused_ferplus[ravdess]"].excluded == {"clips_without_faces_of_their_class": 1}
    assert not sets["fused_ferplus[emodb]"].excluded and len(sets["fused_ferplus[emodb]"]) == 10
    for masked, mask in (("_audio_missing", [1, 0]), ("_face_missing", [0, 1])):
        one = sets["fused_ferplus" + masked]
        assert (np.asarray(one.faces) == np.asarray(sets["fused_ferplus"].faces)).all()
        assert (one.mask == mask).all()
        # the masked sets share the pairs' inputs instead of copying them
        assert one.faces is sets["fused_ferplus"].faces and one.audio is sets["fused_ferplus"].audio


def test_majority_excludes_ties_and_non_emotions_and_counts_them() -> None:
    rows = np.stack(
        [
            votes(anger=6, disgust=4),
            votes(anger=5, disgust=5),  # tie
            votes(contempt=6, neutral=4),  # non-emotion majority
            votes(NF=10),
            votes(),
        ]
    )
    labels, excluded = majority_labels(rows)
    assert labels.tolist() == [LABELS.index("angry"), -1, -1, -1, -1]
    assert excluded == {"no_votes": 1, "tie": 1, "non_emotion": 2}


def test_votes_are_read_beside_the_folders_and_scored_as_a_second_face_row(tmp_path) -> None:
    root = write_fer_folders(tmp_path / "fer")
    files = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*/*.png"))
    header = "file,ferplus_name," + ",".join(VOTE_COLUMNS)
    lines = (
        [header]
        + [
            f"{name},x{i}.png," + ",".join(["0"] * 6 + ["10"] + ["0"] * 3)  # everyone says fear
            for i, name in enumerate(files[:20])
        ]
    )
    (root / "ferplus.csv").write_text("\n".join(lines) + "\n")
    samples = load_corpus(root, "face")
    assert sum(s.votes is not None for s in samples) == 20
    faces = decode_faces(samples, tmp_path / "cache")
    assert faces.votes.shape == (len(samples), 10) and (faces.votes.sum(1) > 0).sum() == 20
    sets = face_sets(faces, AudioConfig())
    assert [s.name for s in sets] == ["face_only", "face_only_ferplus"]
    assert len(sets[1]) == 20 and (sets[1].labels == LABELS.index("fear")).all()
    assert sets[1].excluded == {"no_votes": len(samples) - 20, "tie": 0, "non_emotion": 0}


def test_a_broken_votes_file_is_a_data_error(tmp_path) -> None:
    root = write_fer_folders(tmp_path / "fer")
    (root / "ferplus.csv").write_text("file,neutral\nx.png,3\n")
    with pytest.raises(DataError, match="missing column"):
        load_corpus(root, "face")


@pytest.mark.data
def test_real_ferplus_votes_cover_the_documented_faces(shared_data) -> None:
    samples = load_corpus(shared_data / "fer2013", "face")
    with_votes = [s for s in samples if s.votes is not None]
    assert len(with_votes) == 35533
    test = np.array([s.votes for s in with_votes if s.split == "test"])
    labels, excluded = majority_labels(test)
    assert len(test) == 3552 and (labels >= 0).sum() == 3325
    assert excluded["tie"] + excluded["non_emotion"] == 3552 - 3325


def test_paired_inputs_are_rows_of_the_clips_features_read_only_where_sliced() -> None:
    base = np.arange(5 * 3 * 2, dtype=np.float32).reshape(5, 3, 2)
    index = np.array([4, 4, 0, 2, 4, 1])
    rows, gathered = Rows(base, index), base[index]
    assert len(rows) == 6 and rows.shape == gathered.shape
    assert (rows[1:4] == gathered[1:4]).all() and (rows[:, 0, 1] == gathered[:, 0, 1]).all()
    assert (rows[3, 1] == gathered[3, 1]).all() and (
        rows[np.array([5, 0])] == gathered[[5, 0]]
    ).all()
    assert (np.ascontiguousarray(rows) == gathered).all()
    happy = LABELS.index("happy")
    faces = decoded(
        [happy] * 3, np.zeros((3, len(VOTE_COLUMNS)), np.int16), np.zeros((3, 48, 48), np.uint8)
    )
    speech = speech_clips([happy] * 4)
    pairs = {s.name: s for s in build_eval_sets(faces, speech, AudioConfig(), 5)}["fused"]
    # one feature array for the 4 clips, not a copy of a clip's features for each of its 5 pairs
    assert isinstance(pairs.audio, Rows) and len(pairs.audio.base) == 4 and len(pairs) == 20
