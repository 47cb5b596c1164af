"""What `facesim serve` changes in KServe's ModelServer: the address it binds, the JSON response
class its V1 endpoint uses, and how much it logs.

KServe 0.21 hard-codes `host="0.0.0.0"` in its uvicorn config and answers V1 with FastAPI's
`ORJSONResponse`, which FastAPI deprecated (a warning on every predict).
"""

from __future__ import annotations

import logging
from typing import Any

import kserve
import orjson
from fastapi.responses import JSONResponse

from facesim.contract.api import MODEL_NAME, READY_PATH


class BoundModelServer(kserve.ModelServer):
    """kserve.ModelServer listening on `host` instead of every interface."""

    def __init__(self, host: str, **options: Any) -> None:
        super().__init__(**options)
        self.host = host

    async def _serve(self) -> None:
        # start() has built the REST server(s) but not bound yet: set the address they will bind.
        for rest in (self._rest_server, getattr(self._rest_multiprocess_server, "_rest_server", None)):
            if rest is not None:
                rest.config.host = self.host
        await super()._serve()


class OrjsonResponse(JSONResponse):
    """What FastAPI's deprecated ORJSONResponse renders (numpy values, non-string keys)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def use_orjson_without_deprecation() -> None:
    """Make KServe's V1 endpoint and its app's default answer with OrjsonResponse."""
    from kserve import model_server
    from kserve.protocol.rest import v1_endpoints

    v1_endpoints.ORJSONResponse = OrjsonResponse
    model_server.app.router.default_response_class = OrjsonResponse


# What readiness and liveness probes ask (the UI's page loads, Kubernetes' probes every few seconds,
# scripts waiting for start-up): answered, never logged, so the terminal shows users' requests.
PROBE_PATHS = frozenset({READY_PATH, "/v2/health/live", f"/v1/models/{MODEL_NAME}", f"/v2/models/{MODEL_NAME}/ready"})


class ProbeFilter(logging.Filter):
    """Drops uvicorn's access lines of successful probe requests; a failing probe (a 503 while the
    model loads) is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or len(args) != 5:  # uvicorn: client, method, path, version, status
            return True
        _, method, path, _, status = args
        return not (method == "GET" and str(path).split("?")[0] in PROBE_PATHS and status == 200)


def quiet_logs(verbose: bool) -> None:
    """One access line per request, probes excepted: KServe's INFO lines (start-up, two timing lines
    per request) and probe requests only with --verbose. Call it after kserve.ModelServer has
    configured logging."""
    if verbose:
        return
    for name in ("kserve", "kserve.trace", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, ProbeFilter) for f in access.filters):
        access.addFilter(ProbeFilter())
