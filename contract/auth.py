"""Who may change the gallery: callers presenting the admin token (`Authorization: Bearer <token>`).

The predictor and the UI (which writes on its users' behalf) read the token from
`$FACESIM_ADMIN_TOKEN` or `--admin-token-file`. A predictor with none refuses every write with a
message saying how to set one: secure by default. Reads stay open.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

ADMIN_TOKEN_ENV = "FACESIM_ADMIN_TOKEN"
HOW_TO_SET = (
    f"gallery writes are disabled: start the predictor with ${ADMIN_TOKEN_ENV} set or --admin-token-file FILE, "
    "then send the token as `Authorization: Bearer <token>`"
)


class TokenError(ValueError):
    pass


def load_admin_token(token_file: Path | None = None) -> str | None:
    """The configured token: the file's content (stripped) when given, else the environment; None if empty."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as error:
            raise TokenError(f"cannot read --admin-token-file {token_file}: {error.strerror or error}") from None
        if not token:
            raise TokenError(f"--admin-token-file {token_file} is empty")
        return token
    return os.environ.get(ADMIN_TOKEN_ENV, "").strip() or None


def authorization_problem(configured: str | None, header: str | None) -> tuple[int, str] | None:
    """None when `header` carries the configured token; else the status and message to answer."""
    if not configured:
        return 403, HOW_TO_SET
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return 401, "gallery writes need the admin token: send `Authorization: Bearer <token>`"
    if not hmac.compare_digest(token.strip().encode(), configured.encode()):
        return 401, "the admin token is wrong"
    return None
