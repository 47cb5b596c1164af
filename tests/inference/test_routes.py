"""The extra routes on their own (FastAPI test client), for states a live server passes too fast to see."""

from __future__ import annotations

import json
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import kserve
import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferRequest, InferResponse
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer

from facesim.contract.api import BINARY_V2_HEADER
from facesim.inference.predictor import FaceNetPredictor, ServingConfig
from facesim.inference.protocol import RequestLimits
from facesim.inference.routes import install_routes


def test_a_worker_still_loading_is_not_ready(tmp_path: Path) -> None:
    predictor = FaceNetPredictor(ServingConfig(model_dir=tmp_path / "model", gallery_dir=tmp_path / "gallery"))
    app = FastAPI()
    install_routes(predictor, app)
    client = TestClient(app)
    assert client.get("/v2/health/ready").status_code == 503
    loading = client.get("/v1/models/facenet/gallery")
    assert loading.status_code == 503 and "loading" in loading.json()["error"]
    predictor.ready = True  # what load() sets last
    assert client.get("/v2/health/ready").json() == {"ready": True}


class RecordingModel(kserve.Model):
    """A stand-in predictor (what the routes use of one): it records what it was handed."""

    def __init__(self) -> None:
        super().__init__("facenet")
        self.ready = True
        self.limits = RequestLimits()
        self.payloads: list[object] = []

    async def predict(self, payload: object, headers: dict[str, str] | None = None) -> object:
        self.payloads.append(payload)
        if isinstance(payload, InferRequest):
            return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[])
        return {"predictions": []}


def served_app(model: kserve.Model) -> FastAPI:
    """The app as `facesim serve` composes it: our routes first, then KServe's endpoints, middlewares
    and error handlers (what `RESTServer.create_application` adds to KServe's module-level app)."""
    app = FastAPI()
    install_routes(model, app)  # type: ignore[arg-type]
    repository = ModelRepository()
    repository.update(model)
    kserve_server = RESTServer("unused", DataPlane(repository), ModelRepositoryExtension(repository), 0)
    kserve_server._add_middlewares(app)
    kserve_server._register_endpoints(app)
    kserve_server._add_exception_handlers(app)
    return app


def binary_v2(header: bytes, tensor: bytes) -> tuple[bytes, dict[str, str]]:
    return header + tensor, {BINARY_V2_HEADER: str(len(header)), "content-type": "application/octet-stream"}


def test_each_body_is_parsed_once_and_the_model_sees_it_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The HTTP guard's JSON parse is the only one (KServe's endpoints, which would parse again, are
    shadowed by ours); a binary-extension V2 body goes through KServe's decoder once, a malformed one
    is a 400. (On main 5a959c4 the same count gave 2 JSON parses per request and 2 binary decodes.)"""
    parses: Counter[str] = Counter()

    def counting(name: str, parse: Callable) -> Callable:
        def counted(*args: object, **kwargs: object) -> object:
            parses[name] += 1
            return parse(*args, **kwargs)

        return counted

    monkeypatch.setattr(orjson, "loads", counting("orjson", orjson.loads))
    monkeypatch.setattr(json, "loads", counting("json", json.loads))
    monkeypatch.setattr(InferRequest, "from_bytes", counting("binary", InferRequest.from_bytes))
    model = RecordingModel()
    client = TestClient(served_app(model))
    image = {"name": "image", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}

    assert (
        client.post("/v1/models/facenet:predict", json={"instances": [{"image": {"b64": "aGk="}}]}).status_code == 200
    )
    assert model.payloads[-1] == {"instances": [{"image": {"b64": "aGk="}}]} and parses == {"orjson": 1}
    parses.clear()
    assert client.post("/v2/models/facenet/infer", json={"id": "a", "inputs": [image]}).status_code == 200
    assert isinstance(model.payloads[-1], InferRequest) and model.payloads[-1].id == "a" and parses == {"orjson": 1}
    parses.clear()
    header = json.dumps({"inputs": [{**image, "data": None, "parameters": {"binary_data_size": 7}}]}).encode()
    body, headers = binary_v2(header, struct.pack("<I", 3) + b"aGk")
    assert client.post("/v2/models/facenet/infer", content=body, headers=headers).status_code == 200
    assert model.payloads[-1].inputs[0].data == ["aGk"] and parses["binary"] == 1 and parses["json"] == 0
    parses.clear()
    body, headers = binary_v2(header, b"\x01")  # shorter than it says
    refused = client.post("/v2/models/facenet/infer", content=body, headers=headers)
    assert refused.status_code == 400 and "malformed binary-extension request" in refused.json()["error"]
    assert parses["binary"] == 1 and len(model.payloads) == 3
    for length, problem in (
        ("99999", "says the JSON header is 99,999 bytes but the body has"),
        ("-3", "length in bytes"),
        (b"\xb2", "length in bytes"),  # read as latin-1 "²": a digit to str.isdigit, not to int()
        ("9" * 5000, "length in bytes"),  # past int()'s digit limit
    ):
        lying = client.post("/v2/models/facenet/infer", content=body, headers={**headers, BINARY_V2_HEADER: length})
        assert lying.status_code == 400 and problem in lying.json()["error"], lying.text
