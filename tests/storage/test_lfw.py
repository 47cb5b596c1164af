from __future__ import annotations

from pathlib import Path

import pytest

from facesim.storage.lfw import LfwLayout, Pair, protocol_split, read_pairs, read_people


def test_pairs_has_ten_folds_of_300_same_and_300_different(lfw_dir: Path) -> None:
    folds = read_pairs(lfw_dir / "pairs.txt")
    assert len(folds) == 10
    for fold in folds:
        assert sum(pair.same for pair in fold) == 300 and sum(not pair.same for pair in fold) == 300
    assert folds[0][0] == Pair("Abel_Pacheco", 1, "Abel_Pacheco", 4)


def test_dev_pairs_are_one_fold(lfw_dir: Path) -> None:
    (train,) = read_pairs(lfw_dir / "pairsDevTrain.txt")
    assert len(train) == 2200 and sum(pair.same for pair in train) == 1100


def test_people_sets(lfw_dir: Path) -> None:
    sets = read_people(lfw_dir / "people.txt")
    assert [len(people) for people in sets] == [601, 555, 552, 560, 567, 527, 597, 601, 580, 609]
    assert sets[0]["Abel_Pacheco"] == 4
    (dev_train,) = read_people(lfw_dir / "peopleDevTrain.txt")
    assert len(dev_train) == 4038


def test_protocol_split_is_identity_disjoint(lfw_dir: Path) -> None:
    layout = LfwLayout.find(lfw_dir)
    split = protocol_split(layout)
    sets = read_people(lfw_dir / "people.txt")
    assert split.train_identities.keys() == {name for people in sets[:8] for name in people}
    assert len(split.val_pairs) == 600 and len(split.test_pairs) == 600
    evaluated = {name for pair in split.val_pairs + split.test_pairs for name in (pair.name1, pair.name2)}
    assert not evaluated & split.train_identities.keys()  # no person of folds 9/10 in train sets 1-8


def test_every_test_pair_resolves_to_an_image(lfw_dir: Path) -> None:
    layout = LfwLayout.find(lfw_dir)
    assert layout.images == lfw_dir / "lfw-deepfunneled" and layout.suffix == ".jpg"
    pairs = protocol_split(layout).test_pairs
    assert all(layout.image_path(p.name1, p.n1).is_file() and layout.image_path(p.name2, p.n2).is_file() for p in pairs)
    assert layout.image_path("Aaron_Eckhart", 1) == lfw_dir / "lfw-deepfunneled/Aaron_Eckhart/Aaron_Eckhart_0001.jpg"


def test_find_explains_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LfwLayout.find(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"no pairs\.txt"):
        LfwLayout.find(tmp_path)
    (tmp_path / "pairs.txt").write_text("1\t1\n")
    with pytest.raises(FileNotFoundError, match="no image folder"):
        LfwLayout.find(tmp_path)


def test_malformed_protocol_files(tmp_path: Path) -> None:
    short = tmp_path / "pairs.txt"
    short.write_text("2\t1\nA\t1\t2\nA\t1\tB\t1\n")
    with pytest.raises(ValueError, match="expected 2 folds"):
        read_pairs(short)
    bad = tmp_path / "bad.txt"
    bad.write_text("1\nA\t1\t2\nA\t1\n")
    with pytest.raises(ValueError, match="bad pair line"):
        read_pairs(bad)
    people = tmp_path / "people.txt"
    people.write_text("2\n1\nA\t1\n3\nB\t1\n")
    with pytest.raises(ValueError, match="announces 3 people"):
        read_people(people)
