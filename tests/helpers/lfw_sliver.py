"""A sliver of LFW: a real LFW-layout root (10 people sets, 10 pair folds) over a few hundred of
the shared images, so the whole pipeline (prepare included) runs in a couple of minutes."""

from __future__ import annotations

from pathlib import Path

from facesim.storage.lfw import LfwLayout, Pair, read_pairs, read_people

TRAIN_PEOPLE_PER_SET = 3  # people sets 1-8: 24 training identities of 4-8 images each
PAIRS_PER_FOLD = 3  # per fold: 3 same + 3 different pairs


def _pair_line(pair: Pair) -> str:
    if pair.same:
        return f"{pair.name1}\t{pair.n1}\t{pair.n2}"
    return f"{pair.name1}\t{pair.n1}\t{pair.name2}\t{pair.n2}"


def make_lfw_sliver(lfw_dir: Path, out: Path, pairs_per_fold: int = PAIRS_PER_FOLD) -> Path:
    """Protocol files cut from the real ones (`pairs_per_fold` same + as many different pairs per
    fold), and links to exactly the images they name."""
    layout = LfwLayout.find(lfw_dir)
    people_sets = read_people(layout.protocol_file("people.txt"))
    folds = read_pairs(layout.protocol_file("pairs.txt"))
    train_sets = [
        dict([(name, n) for name, n in people.items() if 4 <= n <= 8][:TRAIN_PEOPLE_PER_SET])
        for people in people_sets[:8]
    ]
    kept_folds = [
        [p for p in fold if p.same][:pairs_per_fold] + [p for p in fold if not p.same][:pairs_per_fold]
        for fold in folds
    ]
    eval_sets = [
        {name: people_sets[8 + k][name] for pair in kept_folds[8 + k] for name in (pair.name1, pair.name2)}
        for k in range(2)
    ]
    # Every image of every listed person (people.txt counts must hold), and the other folds' pairs.
    images: set[tuple[str, int]] = {
        (name, n) for people in train_sets + eval_sets for name, count in people.items() for n in range(1, count + 1)
    }
    images |= {image for fold in kept_folds for p in fold for image in ((p.name1, p.n1), (p.name2, p.n2))}
    for name, n in images:
        link = out / "lfw-deepfunneled" / name / layout.image_path(name, n).name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(layout.image_path(name, n))
    sets = train_sets + eval_sets
    people_lines = [str(len(sets))] + [
        line for people in sets for line in [str(len(people)), *(f"{k}\t{v}" for k, v in people.items())]
    ]
    (out / "people.txt").write_text("\n".join(people_lines) + "\n")
    write_pairs(out / "pairs.txt", kept_folds)
    return out


def write_pairs(path: Path, folds: list[list[Pair]]) -> None:
    """pairs.txt: "folds count", then each fold's count same and count different pairs."""
    pair_lines = [f"{len(folds)}\t{len(folds[0]) // 2}"] + [_pair_line(p) for fold in folds for p in fold]
    path.write_text("\n".join(pair_lines) + "\n")
