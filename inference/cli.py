"""`facesim serve` and `python -m facesim.inference` (the container entrypoint): run the KServe predictor.

KServe's own options (`--http_port`, `--workers`, `--grpc_port`, `--enable_grpc`, ...) are
accepted and passed to `kserve.ModelServer`; `--port` is a short form of `--http_port`. It binds
127.0.0.1 unless `--host` says otherwise (containers pass `--host 0.0.0.0`), and prints one access
line per request unless `--verbose` (KServe's start-up and per-request timing lines).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from facesim.contract.api import GALLERY_DSN_ENV
from facesim.faces.detect import add_yunet_argument
from facesim.gallery.index import DEFAULT_APPROXIMATE_THRESHOLD, DEFAULT_POLL_S
from facesim.inference.protocol import RequestLimits
from facesim.storage.model_artifact import DEFAULT_RUNTIME, RUNTIMES

# `facesim serve` flag -> help; each sets the RequestLimits field of the same name.
LIMIT_FLAGS = {
    "--max-image-bytes": "largest accepted image file",
    "--max-image-pixels": "largest accepted image, width x height",
    "--max-instances": "most images in one request",
    "--max-request-bytes": "largest accepted request body, counted while it streams, chunked too (413 above)",
    "--max-request-pixels": "most pixels (width x height) of all images and compare images of one request together",
    "--max-header-bytes": "largest request header line (431 above)",
}


def _number_at_least(kind: type, low: float, exclusive: bool = False):
    """An argparse type: a finite number of `kind` at or above `low` (above it when `exclusive`).
    nan and inf pass every comparison argparse would make, so they are refused by name."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < low or (exclusive and value == low):
            raise argparse.ArgumentTypeError(f"{text!r}: give a finite number {'>' if exclusive else '>='} {low:g}")
        return value

    return parse


def _field(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _parser() -> argparse.ArgumentParser:
    from kserve.model_server import parser as kserve_parser

    parser = argparse.ArgumentParser(
        prog="facesim serve",
        description="Serve the `facenet` KServe predictor: V1 /v1/models/facenet:predict, "
        "V2 /v2/models/facenet/infer, and the gallery endpoints (docs/api.md).",
        parents=[kserve_parser],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model",
        "--model_dir",
        dest="model",
        type=Path,
        help="model artifact directory (default: the latest registered model)",
    )
    parser.add_argument(
        "--gallery",
        "--gallery_dir",
        dest="gallery",
        default=os.environ.get(GALLERY_DSN_ENV) or None,
        help="gallery directory, or a PostgreSQL DSN postgresql://USER@HOST:PORT/DB shared by replicas "
        f"(default: ${GALLERY_DSN_ENV} if set, else the latest registered gallery; a DSN's password may "
        "come from $PGPASSWORD)",
    )
    parser.add_argument(
        "--index-dir",
        type=Path,
        default=None,
        help="where the FAISS index is saved and loaded at start (default: index/ in a gallery directory; "
        "none for PostgreSQL: each replica then reads the gallery at start)",
    )
    parser.add_argument(
        "--gallery-poll-s",
        type=_number_at_least(float, 0, exclusive=True),
        default=DEFAULT_POLL_S,
        help="PostgreSQL galleries: read the gallery version at least this often (the fallback when a "
        "commit's notification is missed); a commit is searchable on every replica within this plus the read",
    )
    parser.add_argument(
        "--no-gallery-listen",
        dest="gallery_listen",
        action="store_false",
        help="PostgreSQL galleries: poll only, without LISTEN/NOTIFY (e.g. behind a transaction-mode pooler)",
    )
    parser.add_argument(
        "--gallery-wait-s",
        type=_number_at_least(float, 0),
        default=120.0,
        help="PostgreSQL galleries: how long a start waits for the database, retrying with backoff, "
        "before it gives up saying why",
    )
    parser.add_argument("--port", type=int, default=None, help="HTTP port (same as --http_port)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every interface, as in a container)"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="KServe's own logs too: start-up, per-request timing lines"
    )
    parser.add_argument(
        "--backend",
        choices=("local", "cluster"),
        default="local",
        help="local: run the server here; cluster: deploy the InferenceService "
        "(see `facesim serve --backend cluster --help`)",
    )
    add_yunet_argument(parser)
    defaults = RequestLimits()
    for flag, text in LIMIT_FLAGS.items():
        parser.add_argument(flag, type=_number_at_least(int, 1), default=getattr(defaults, _field(flag)), help=text)
    parser.add_argument(
        "--admin-token-file",
        type=Path,
        default=None,
        help="file holding the token that gallery writes (enrol, remove) must send as `Authorization: Bearer "
        "<token>` (default: $FACESIM_ADMIN_TOKEN; with neither, writes are refused)",
    )
    parser.add_argument(
        "--approximate-threshold",
        type=_number_at_least(int, 0),
        default=DEFAULT_APPROXIMATE_THRESHOLD,
        help="gallery size (embeddings) from which search uses the FAISS IVF index",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=DEFAULT_RUNTIME,
        help="what runs the embedding network: onnx (model.onnx under ONNX Runtime; no TensorFlow needed) "
        "or tensorflow (the SavedModel) (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        "--tf-threads",
        dest="threads",
        type=_number_at_least(int, 0),
        default=1,
        help="intra-op threads of the runtime for the embedding network (0: all cores); one is "
        "fastest for single faces, more help large batches on many cores (default: %(default)s)",
    )
    # The predictor answers REST; gRPC (port 8081) is opt-in so several servers can share a host.
    parser.set_defaults(enable_grpc=False)
    return parser


def serve_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument("--backend", choices=("local", "cluster"), default="local")
    if backend.parse_known_args(argv)[0].backend == "cluster":
        from facesim.cluster.inference_service import (
            main as cluster_main,  # its own options (namespace, image, ...)
        )

        return cluster_main(argv)
    args = _parser().parse_args(argv)
    from facesim.contract.auth import TokenError

    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notices, before it loads
    from facesim.gallery.api import GalleryError, GalleryUnavailable
    from facesim.storage.model_artifact import ModelError

    try:
        model_dir, gallery_dir = _resolve_artifacts(args.model, args.gallery)
        return _serve(args, model_dir, gallery_dir)
    except (ModelError, GalleryError, FileNotFoundError, TokenError) as error:
        print(f"facesim serve: {error}", file=sys.stderr)
        return 2
    except GalleryUnavailable as error:  # e.g. the database went away after the start's wait
        print(f"facesim serve: {error.detail}", file=sys.stderr)
        return 3


def _resolve_artifacts(model: Path | None, gallery: str | Path | None) -> tuple[Path, Path | str]:
    if model is None or gallery is None:
        from facesim.storage.paths import latest_gallery, latest_model

        model = model or latest_model()
        gallery = gallery or latest_gallery()
    if model is None:
        raise FileNotFoundError("no --model given and no model registered: train one with `facesim train`")
    if gallery is None:
        raise FileNotFoundError("no --gallery given and none registered: build one with `facesim gallery build`")
    from facesim.gallery.api import gallery_location

    return model, gallery_location(str(gallery))


def _serve(args: argparse.Namespace, model_dir: Path, gallery_dir: Path | str) -> int:
    from facesim.contract.auth import load_admin_token
    from facesim.inference.predictor import FaceNetPredictor, ServingConfig
    from facesim.inference.routes import install_routes
    from facesim.inference.server import BoundModelServer, quiet_logs, use_orjson_without_deprecation

    limits = RequestLimits(**{_field(flag): getattr(args, _field(flag)) for flag in LIMIT_FLAGS})
    config = ServingConfig(
        model_dir=model_dir,
        gallery_dir=gallery_dir,
        limits=limits,
        approximate_threshold=args.approximate_threshold,
        yunet_path=args.yunet_path,
        runtime=args.runtime,
        threads=args.threads,
        admin_token=load_admin_token(args.admin_token_file),
        index_dir=args.index_dir,
        poll_s=args.gallery_poll_s,
        listen=args.gallery_listen,
        gallery_wait_s=args.gallery_wait_s,
        verbose=args.verbose,
    )
    predictor = FaceNetPredictor(config)
    predictor.load()
    use_orjson_without_deprecation()
    install_routes(predictor)
    server = BoundModelServer(
        args.host,
        http_port=args.port or args.http_port,
        grpc_port=args.grpc_port,
        workers=args.workers,
        max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers,
        enable_grpc=args.enable_grpc,
        enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging and args.verbose,
        access_log_format=args.access_log_format,
        event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
    )
    quiet_logs(args.verbose)
    port = args.port or args.http_port
    print(
        f"facesim serve: facenet on http://{args.host}:{port} (model {predictor.model_info.version}, detector "
        f"{predictor.preprocessor.detector.name}, gallery {gallery_dir}); one line per request"
        f"{'' if args.verbose else ', --verbose for more'}",
        flush=True,
    )
    server.start([predictor])
    return 0
