"""The shell scripts: shellcheck-clean, and the kind end-to-end script installs what docs/cluster.md names."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = [*sorted((REPO / "scripts").glob("*.sh")), REPO / ".ci" / "run"]
KIND_E2E = REPO / "scripts" / "kind-e2e.sh"


def shellcheck(*paths: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("shellcheck")
    assert tool, "shellcheck is missing: scripts/test.sh installs it (scripts/install-tools.sh)"
    return subprocess.run([tool, "--external-sources", *map(str, paths)], capture_output=True, text=True, check=False)


def test_every_script_passes_shellcheck() -> None:
    result = shellcheck(*SCRIPTS)
    assert result.returncode == 0, result.stdout


def test_shellcheck_catches_what_it_should(tmp_path: Path) -> None:
    sloppy = tmp_path / "sloppy.sh"
    sloppy.write_text("#!/usr/bin/env bash\nfor f in $(ls *.yaml); do kubectl apply -f $f; done\n")
    result = shellcheck(sloppy)
    assert result.returncode != 0 and "SC2045" in result.stdout and "SC2086" in result.stdout


def _versions(pattern: str, text: str) -> set[str]:
    return {match.lstrip("v") for match in re.findall(pattern, text)}


@pytest.mark.parametrize(
    "name, in_docs, in_script",
    [
        ("Training Operator", r"training-operator\.git/\S+\?ref=(v[\d.]+)", r"TRAINING_OPERATOR_VERSION=(v[\d.]+)"),
        ("Katib", r"katib\.git/\S+\?ref=(v[\d.]+)", r"KATIB_VERSION=(v[\d.]+)"),
        ("cert-manager", r"cert-manager/releases/download/(v[\d.]+)/", r"CERT_MANAGER_VERSION=(v[\d.]+)"),
        ("KServe", r"kserve/releases/download/(v[\d.]+)/", r"KSERVE_VERSION=(v[\d.]+)"),
        ("Kubeflow Pipelines", r"PIPELINE_VERSION=([\d.]+)", r"PIPELINE_VERSION=([\d.]+)"),
        ("csi-driver-nfs", r"csi-driver-nfs --version (v?[\d.]+)", r"CSI_DRIVER_NFS_VERSION=(v?[\d.]+)"),
    ],
)
def test_the_kind_script_installs_the_versions_the_docs_name(name: str, in_docs: str, in_script: str) -> None:
    docs = _versions(in_docs, (REPO / "docs" / "cluster.md").read_text())
    script = _versions(in_script, KIND_E2E.read_text())
    assert len(docs) == 1 and docs == script, f"{name}: docs/cluster.md {docs}, scripts/kind-e2e.sh {script}"


def test_kfp_backend_matches_the_sdk_that_compiles_the_pipeline() -> None:
    """The pipeline is compiled with kfp 2.17.3: the backend the docs install is the same release."""
    import kfp

    docs = _versions(r"PIPELINE_VERSION=([\d.]+)", (REPO / "docs" / "cluster.md").read_text())
    assert docs == {kfp.__version__}
