"""`facesim data`: fetch LFW, prepare the aligned-crop cache, show what a dataset holds."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from facesim.faces.align import TEMPLATES
from facesim.faces.detect import DETECTOR_KINDS, add_yunet_argument
from facesim.faces.download import DownloadError
from facesim.faces.image import ImageError
from facesim.faces.preprocess import SUBJECTS, PreprocessConfig
from facesim.storage.cache import prepare_crops, print_report, read_manifest, source_images
from facesim.storage.datasets import IdentityDataset
from facesim.storage.fetch import fetch_lfw
from facesim.storage.lfw import protocol_split
from facesim.storage.paths import facesim_home


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facesim data", description="Fetch and prepare face datasets.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    fetch = commands.add_parser("fetch", help="download a dataset (LFW deep-funneled + protocol files)")
    fetch.add_argument("dataset", choices=["lfw"], help="which dataset")
    fetch.add_argument("--out", type=Path, default=None, help="where to put it (default $FACESIM_HOME/data/lfw)")
    fetch.add_argument("--mirror", help="URL or directory holding the same file names, for offline machines")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bars")

    prepare = commands.add_parser(
        "prepare",
        help="align every face into a crop cache (parallel, resumable)",
        description="Detect and align the face in every image of an identity-folder dataset or LFW root "
        "into OUT/<identity>/<stem>.png. A second run skips crops already made.",
    )
    prepare.add_argument("--data", type=Path, required=True, help="LFW root or folder of identity folders")
    prepare.add_argument("--out", type=Path, required=True, help="cache folder (an LFW source gives an LFW root)")
    prepare.add_argument("--image-size", type=int, default=112, help="crop side in pixels (default 112; 160 works)")
    prepare.add_argument(
        "--template",
        choices=tuple(TEMPLATES),
        default="arcface-5pt",
        help="where the five points go in the crop: arcface-5pt, or dlib-chip-5pt for the faceapi_resnet "
        "network (default: %(default)s)",
    )
    prepare.add_argument(
        "--detector", choices=DETECTOR_KINDS, default="auto", help="auto: YuNet if weights exist, else Haar"
    )
    add_yunet_argument(prepare)
    prepare.add_argument(
        "--fallback",
        choices=["auto", "none", "center"],
        default="auto",
        help="no face found: centre crop or leave out (auto: centre crop for LFW, whose images are pre-cropped)",
    )
    prepare.add_argument(
        "--subject",
        choices=["auto", *SUBJECTS],
        default="auto",
        help="which face of several to crop: the largest, or the one nearest the centre (auto: central for LFW, "
        "cropped around its subject; else largest)",
    )
    cores = len(os.sched_getaffinity(0))
    prepare.add_argument("--workers", type=int, default=cores, help=f"processes (default: all cores, {cores})")
    prepare.add_argument("--only-identities", nargs="+", metavar="NAME", help="prepare only these identities")
    prepare.add_argument("--identities-file", type=Path, help="prepare only the identities listed (one per line)")
    prepare.add_argument("--limit-identities", type=int, help="prepare only the first N identities (sorted by name)")
    prepare.add_argument("--no-progress", action="store_true", help="no progress bar")

    info = commands.add_parser("info", help="count identities and images; show a cache's settings")
    info.add_argument("--data", type=Path, required=True, help="LFW root, crop cache or folder of identity folders")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"fetch": _fetch, "prepare": _prepare, "info": _info}[args.command](args)
    except (FileNotFoundError, ValueError, ImageError, DownloadError) as error:
        print(f"facesim data {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"facesim data {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _fetch(args: argparse.Namespace) -> int:
    out = args.out or facesim_home() / "data" / "lfw"
    layout = fetch_lfw(out, args.mirror, progress=not args.no_progress)
    dataset = IdentityDataset.scan(layout.images)
    print(f"LFW ready in {layout.root}: {len(dataset.identities)} identities, {dataset.num_images} images")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    only = _identities(args)
    _, layout = source_images(args.data)
    fallback = args.fallback if args.fallback != "auto" else ("center" if layout else "none")
    subject = args.subject if args.subject != "auto" else ("central" if layout else "largest")
    config = PreprocessConfig(
        image_size=args.image_size,
        detector=args.detector,
        yunet_path=args.yunet_path,
        fallback=fallback,
        template=args.template,
        subject=subject,
    )
    report = prepare_crops(
        args.data, args.out, config, args.workers, only, args.limit_identities, progress=not args.no_progress
    )
    print_report(report)
    return 0


def _identities(args: argparse.Namespace) -> list[str] | None:
    names = list(args.only_identities or [])
    if args.identities_file:
        if not args.identities_file.is_file():
            raise FileNotFoundError(f"--identities-file {args.identities_file} does not exist")
        names += [line.strip() for line in args.identities_file.read_text().splitlines() if line.strip()]
    return names or None


def _info(args: argparse.Namespace) -> int:
    images_root, layout = source_images(args.data)
    dataset = IdentityDataset.scan(images_root)
    several = sum(1 for images in dataset.identities.values() if len(images) >= 2)
    print(
        f"{args.data}: {len(dataset.identities)} identities, {dataset.num_images} images, "
        f"{several} identities with 2+ images"
    )
    manifest = read_manifest(args.data)
    if manifest:
        settings, counts = manifest["preprocessing"], manifest["counts"]
        print(
            f"crop cache: {settings['image_size']} px, detector {settings['detector_used']}, "
            f"fallback {settings['fallback']}, subject {settings.get('subject', 'largest')}; {counts['fallback']} centre-crop fallbacks, "
            f"{counts['no_face']} without a face, {counts['errors']} unreadable"
        )
    if layout is not None:
        split = protocol_split(layout)
        print(
            f"LFW protocol (docs/protocol.md): {len(split.train_identities)} train identities (people sets 1-8), "
            f"{len(split.val_pairs)} val pairs (fold 9), {len(split.test_pairs)} test pairs (fold 10)"
        )
    return 0
