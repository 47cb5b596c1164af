"""`facesim ui` / `python -m facesim.ui`: serve the web front end with waitress (Flask's server only with --debug)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from facesim.contract.auth import TokenError, load_admin_token
from facesim.contract.client import PredictorClient, Timeouts

if TYPE_CHECKING:
    from flask import Flask

DEFAULT_PREDICTOR_URL = "http://127.0.0.1:8080"
DEFAULT_PORT = 5000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facesim ui",
        description="Run the facesim web front end (search, compare, gallery, model card). It talks to the "
        "predictor over HTTP only.",
    )
    parser.add_argument(
        "--predictor",
        default=os.environ.get("FACESIM_PREDICTOR_URL", DEFAULT_PREDICTOR_URL),
        metavar="URL",
        help="predictor base URL (env FACESIM_PREDICTOR_URL; default %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=_env_int("PORT", DEFAULT_PORT),
        help="port to listen on (env PORT; default %(default)s)",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("FACESIM_UI_HOST", "127.0.0.1"),
        help="interface to listen on (env FACESIM_UI_HOST; default %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="longest wait for one predictor answer (connecting: 2 s) (default %(default)s)",
    )
    parser.add_argument(
        "--admin-token-file",
        type=Path,
        default=None,
        help="file holding the predictor's admin token, sent on enrol and remove (default: $FACESIM_ADMIN_TOKEN); "
        "set FACESIM_UI_PASSWORD to make those pages ask for a password",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=20.0,
        metavar="MIB",
        help="largest upload per request (default %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=8, help="waitress worker threads (default %(default)s)")
    parser.add_argument(
        "--debug", action="store_true", help="Flask's development server with the debugger (never in production)"
    )
    return parser


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


def main(argv: list[str] | None = None) -> int:
    """`facesim ui` and the container entrypoint `python -m facesim.ui`."""
    args = _parser().parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"facesim ui: --port {args.port} is not a TCP port (1-65535)", file=sys.stderr)
        return 2
    if not args.predictor.startswith(("http://", "https://")):
        print(f"facesim ui: --predictor {args.predictor!r} must be an http:// or https:// URL", file=sys.stderr)
        return 2
    if args.timeout <= 0 or args.max_upload_mb <= 0 or args.threads < 1:
        print("facesim ui: --timeout, --max-upload-mb and --threads must be positive", file=sys.stderr)
        return 2

    from facesim.ui.app import UiConfig, create_app

    try:
        admin_token = load_admin_token(args.admin_token_file)
    except TokenError as error:
        print(f"facesim ui: {error}", file=sys.stderr)
        return 2
    config = UiConfig(
        predictor_url=args.predictor,
        timeout_s=args.timeout,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        admin_token=admin_token,
    )
    app = create_app(config)
    ready = PredictorClient(args.predictor, Timeouts(connect_s=2.0, read_s=2.0)).is_ready()
    state = "ready" if ready else "NOT reachable yet (pages will show a banner until it is)"
    print(f"facesim ui: http://{args.host}:{args.port}/  predictor {args.predictor}: {state}", flush=True)
    try:
        _serve(app, args)
    except OSError as error:  # the port is taken, or the host is not an address of this machine
        print(
            f"facesim ui: cannot listen on {args.host}:{args.port}: {error.strerror or error}; "
            "choose another --port or --host",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _serve(app: Flask, args: argparse.Namespace) -> None:
    if args.debug:
        app.run(host=args.host, port=args.port, debug=True)
        return
    from waitress import serve

    # waitress buffers whole bodies (to disk when large); Flask's own limit answers oversize uploads kindly.
    serve(app, host=args.host, port=args.port, threads=args.threads)
