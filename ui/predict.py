"""`facesim predict`: send an image (and optionally a second one to compare) to a running predictor.

The answer is checked by the API client (facesim.contract.client): whatever a server sends, the
command prints the table (or JSON) or one line saying what went wrong, and exits 1."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from facesim.contract.client import PredictorClient, PredictorError, Timeouts
from facesim.contract.display import card_text, display_name

DEFAULT_URL = "http://localhost:8080"


def format_answer(answer: dict, image_name: str, compare_name: str | None = None) -> str:
    """A readable table: one row per face, its box, detector score and top matches."""
    prediction = answer["predictions"][0]
    faces = prediction["faces"]
    lines = [
        (
            f"{image_name}: {len(faces)} face{'s' if len(faces) != 1 else ''} "
            f"(model {answer.get('model_fingerprint')}, gallery {answer.get('gallery_version') or 'unregistered'} "
            f"with {answer.get('gallery_edits', 0)} edits, "
            f"same-person threshold {answer.get('threshold', float('nan')):.3f} "
            f"from the {answer.get('threshold_source', 'model')})"
        )
    ]
    if faces:
        lines.append(f"  {'#':>2}  {'box x, y, w, h':<22} {'score':>5}  top matches (distance, verdict)")
    for number, face in enumerate(faces, 1):
        box = ", ".join(f"{v:.0f}" for v in face["box"])
        matches = (
            "; ".join(
                f"{display_name(m['identity'])} {m['distance']:.3f} {'SAME' if m['same'] else 'different'}"
                for m in face["matches"]
            )
            or "(empty gallery)"
        )
        lines.append(f"  {number:>2}  {box:<22} {face['score']:>5.2f}  {matches}")
    if compare_name is not None:
        lines.append(_comparison_line(prediction, compare_name))
    return "\n".join(lines)


def _comparison_line(prediction: dict, compare_name: str) -> str:
    if prediction.get("distance") is None:
        missing = "the compared image" if prediction.get("compare_face") is None else "the first image"
        return f"compare with {compare_name}: no face in {missing}, no verdict"
    verdict = "SAME person" if prediction["same"] else "different people"
    return f"compare with {compare_name}: distance {prediction['distance']:.3f} -> {verdict}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facesim predict",
        description="Ask a running predictor about an image.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("image", type=Path, nargs="?", help="JPEG/PNG image")
    parser.add_argument("--compare", type=Path, default=None, help="second image: is it the same person?")
    parser.add_argument("--url", default=DEFAULT_URL, help="predictor base URL (or its full :predict URL)")
    parser.add_argument("--top-k", type=int, default=3, help="gallery matches per face")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer on one line")
    parser.add_argument("--pretty", action="store_true", help="with --json: indented, one field per line")
    parser.add_argument(
        "--model-card", action="store_true", help="print the served model's card (no image needed); --json: raw"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.model_card:
        return _ask(args, PredictorClient.model_card, card_text)
    if args.image is None:
        parser.error("give an IMAGE to look at (or --model-card)")
    try:
        image = args.image.read_bytes()
        compare = args.compare.read_bytes() if args.compare else None
    except OSError as error:
        print(f"facesim predict: cannot read {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    compare_name = args.compare.name if args.compare else None
    return _ask(
        args,
        lambda client: client.predict(image, compare, args.top_k),
        lambda answer: format_answer(answer, args.image.name, compare_name),
    )


def _ask(args: argparse.Namespace, request: Callable[[PredictorClient], dict], as_text: Callable[[dict], str]) -> int:
    """Send one request; print its answer as JSON (--json) or as text; a failure is one line, exit 1."""
    try:
        answer = request(PredictorClient(args.url, Timeouts(read_s=args.timeout)))
    except PredictorError as error:
        print(f"facesim predict: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2) if args.pretty else json.dumps(answer, separators=(",", ":")))
    else:
        print(as_text(answer))
    return 0
