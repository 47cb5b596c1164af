"""LFW layout and protocol files (pairs.txt folds, people.txt sets) and the split of docs/protocol.md.

Works on the raw LFW root (`lfw-deepfunneled/<name>/<name>_0001.jpg` + protocol files) and on a
prepared crop cache (`<name>/<name>_0001.png` + copies of the protocol files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROTOCOL_FILES = (
    "pairs.txt",
    "people.txt",
    "pairsDevTrain.txt",
    "pairsDevTest.txt",
    "peopleDevTrain.txt",
    "peopleDevTest.txt",
    "lfw-names.txt",
)
IMAGE_DIR_NAMES = ("lfw-deepfunneled", "lfw", "lfw_funneled", "lfw-funneled")
CACHE_MANIFEST = "facesim-cache.json"  # written by storage.cache; marks a prepared cache


@dataclass(frozen=True)
class Pair:
    name1: str
    n1: int
    name2: str
    n2: int

    @property
    def same(self) -> bool:
        return self.name1 == self.name2


@dataclass(frozen=True)
class LfwLayout:
    root: Path
    images: Path  # the folder of identity folders
    suffix: str  # ".jpg" in the raw set, ".png" in a crop cache

    @classmethod
    def find(cls, root: str | Path) -> LfwLayout:
        """Locate the images folder and protocol files under `root`."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root} does not exist: give the LFW root (run `facesim data fetch lfw`)")
        if not (root / "pairs.txt").is_file():
            raise FileNotFoundError(
                f"{root} has no pairs.txt: give an LFW root with its protocol files (`facesim data fetch lfw`) "
                "or a cache prepared from one"
            )
        if (root / CACHE_MANIFEST).is_file():
            return cls(root, root, ".png")
        for name in IMAGE_DIR_NAMES:
            if (root / name).is_dir():
                return cls(root, root / name, ".jpg")
        raise FileNotFoundError(f"{root} has pairs.txt but no image folder ({' or '.join(IMAGE_DIR_NAMES)})")

    def protocol_file(self, name: str) -> Path:
        path = self.root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: fetch the LFW protocol files (`facesim data fetch lfw`)")
        return path

    def image_path(self, name: str, n: int) -> Path:
        """LFW numbering: image n (1-based) of `name` is `<name>/<name>_<nnnn>`."""
        return self.images / name / f"{name}_{n:04d}{self.suffix}"


def image_path(layout: LfwLayout, name: str, n: int) -> Path:
    return layout.image_path(name, n)


def read_pairs(path: str | Path) -> list[list[Pair]]:
    """Folds of pairs. pairs.txt starts "folds count" (each fold: count same + count different
    pairs); the Dev files start with "count" only and hold one fold."""
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    header = [int(v) for v in lines[0]]
    folds, per_fold = (1, header[0]) if len(header) == 1 else header
    rows = lines[1:]
    if len(rows) != folds * 2 * per_fold:
        raise ValueError(f"{path}: expected {folds} folds of {2 * per_fold} pairs, found {len(rows)} lines")
    return [[_pair(row, path) for row in rows[k * 2 * per_fold : (k + 1) * 2 * per_fold]] for k in range(folds)]


def _pair(row: list[str], path: str | Path) -> Pair:
    if len(row) == 3:
        return Pair(row[0], int(row[1]), row[0], int(row[2]))
    if len(row) == 4:
        return Pair(row[0], int(row[1]), row[2], int(row[3]))
    raise ValueError(f"{path}: bad pair line {' '.join(row)!r} (want 'name n1 n2' or 'name1 n1 name2 n2')")


def read_people(path: str | Path) -> list[dict[str, int]]:
    """Sets of {name: image count}. people.txt starts with the number of sets, each set with its
    size; the Dev files start with the size of their one set."""
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    multi_set = len(lines) > 1 and len(lines[1]) == 1
    position, sets = (1, int(lines[0][0])) if multi_set else (0, 1)
    result = []
    for _ in range(sets):
        size = int(lines[position][0])
        chunk = lines[position + 1 : position + 1 + size]
        if len(chunk) != size or any(len(row) != 2 for row in chunk):
            raise ValueError(f"{path}: a set announces {size} people but its lines don't match")
        result.append({name: int(count) for name, count in chunk})
        position += 1 + size
    return result


@dataclass(frozen=True)
class ProtocolSplit:
    """Identity-disjoint LFW View 2 (docs/protocol.md)."""

    train_identities: dict[str, int]  # people.txt sets 1-8: name -> number of images
    val_pairs: list[Pair]  # pairs.txt fold 9: threshold and tuning
    test_pairs: list[Pair]  # pairs.txt fold 10: the reported figure


def protocol_split(layout: LfwLayout) -> ProtocolSplit:
    people_sets = read_people(layout.protocol_file("people.txt"))
    folds = read_pairs(layout.protocol_file("pairs.txt"))
    if len(people_sets) != 10 or len(folds) != 10:
        raise ValueError(f"{layout.root}: expected 10 people sets and 10 pair folds (LFW View 2)")
    train = {name: count for people in people_sets[:8] for name, count in people.items()}
    evaluated = {name for pair in folds[8] + folds[9] for name in (pair.name1, pair.name2)}
    overlap = evaluated & train.keys()
    if overlap:
        raise ValueError(f"protocol files are not identity-disjoint: {sorted(overlap)[:5]} in both train and eval")
    return ProtocolSplit(train, folds[8], folds[9])
