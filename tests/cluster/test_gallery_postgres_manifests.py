"""`facesim manifests --gallery-backend postgresql`: a PostgreSQL StatefulSet + PVC + Secret and an
InferenceService that scales out, validated as a cluster would (Kubernetes schemas, KServe's CRD)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from facesim.cli import main as facesim_main
from tests.helpers.crd_validation import crd_errors

K8S_VERSION = kubernetes_validate.latest_version()
PASSWORD = "s3cret/with:odd@chars"


def render(out: Path, *options: str) -> dict[str, list[dict]]:
    assert (
        facesim_main(
            ["manifests", "--out", str(out), "--namespace", "faces", "--gallery-backend", "postgresql", *options]
        )
        == 0
    )
    return {path.name: list(yaml.safe_load_all(path.read_text())) for path in sorted(out.glob("*.yaml"))}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    return render(
        tmp_path_factory.mktemp("manifests"), "--gallery-db-password", PASSWORD, "--predictor-max-replicas", "6"
    )


def test_postgres_database_resources_pass_kubernetes_schemas(rendered: dict[str, list[dict]]) -> None:
    secret, service, statefulset = rendered["gallery-postgres.yaml"]
    assert [secret["kind"], service["kind"], statefulset["kind"]] == ["Secret", "Service", "StatefulSet"]
    for document in (secret, service, statefulset):
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and claim["spec"]["resources"]["requests"]["storage"]
    assert service["spec"]["clusterIP"] == "None" and statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    pod = statefulset["spec"]["template"]
    assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    password = next(e for e in container["env"] if e["name"] == "POSTGRES_PASSWORD")["valueFrom"]["secretKeyRef"]
    assert password["name"] == secret["metadata"]["name"] and secret["stringData"][password["key"]] == PASSWORD
    assert container["securityContext"]["runAsNonRoot"] and PASSWORD not in yaml.safe_dump(statefulset)


def test_postgres_inference_service_scales_out_and_reads_its_dsn_from_the_secret(
    rendered: dict[str, list[dict]], crds_dir: Path
) -> None:
    (isvc,) = rendered["inferenceservice.yaml"]
    assert crd_errors(isvc, crds_dir / "serving.kserve.io_inferenceservices.yaml") == []
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] >= 2 and predictor["maxReplicas"] == 6
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("cpu", 70)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    (container,) = predictor["containers"]
    assert "--gallery" not in container["args"] and PASSWORD not in yaml.safe_dump(isvc)
    dsn_ref = next(e for e in container["env"] if e["name"] == "FACESIM_GALLERY_DSN")["valueFrom"]["secretKeyRef"]
    secret, service, _ = rendered["gallery-postgres.yaml"]
    assert dsn_ref["name"] == secret["metadata"]["name"]
    dsn = secret["stringData"][dsn_ref["key"]]
    assert dsn.startswith("postgresql://") and f"@{service['metadata']['name']}.faces.svc.cluster.local:5432/" in dsn
    # The replicas save and load their FAISS index on the models PVC (ready without reading the whole gallery).
    index_dir = container["args"][container["args"].index("--index-dir") + 1]
    model, index = container["volumeMounts"]
    (volume,) = predictor["volumes"]  # the model and the index: two subPaths of the one models volume
    assert volume["persistentVolumeClaim"]["claimName"] == "facesim-models"
    assert model["name"] == index["name"] == volume["name"] and model["readOnly"] is True
    assert index["mountPath"] == index_dir and index["subPath"] == f"gallery-index/{isvc['metadata']['name']}"
    assert all(resource["metadata"]["namespace"] == "faces" for resource in [isvc, *rendered["gallery-postgres.yaml"]])


def test_postgres_knative_mode_scales_on_concurrency(tmp_path: Path, crds_dir: Path) -> None:
    (isvc,) = render(tmp_path, "--deployment-mode", "Knative")["inferenceservice.yaml"]
    assert crd_errors(isvc, crds_dir / "serving.kserve.io_inferenceservices.yaml") == []
    assert isvc["spec"]["predictor"]["scaleMetric"] == "concurrency"


def test_postgres_backend_refuses_a_single_replica(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        facesim_main(
            ["manifests", "--out", str(tmp_path), "--gallery-backend", "postgresql", "--predictor-min-replicas", "1"]
        )
    assert exited.value.code == 2 and "at least 2 predictor replicas" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
