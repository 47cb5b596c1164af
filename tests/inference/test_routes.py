"""The extra routes on their own (FastAPI test client), for states a live server passes too fast to see."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from facesim.inference.predictor import FaceNetPredictor, ServingConfig
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
