"""Fixtures for storage tests: a few real LFW identities."""

from __future__ import annotations

from pathlib import Path

import pytest

# Small, real, and varied: one image, several, and one with four (protocol test pairs use them).
FEW_IDENTITIES = ("Aaron_Eckhart", "Abel_Pacheco", "Akhmed_Zakayev", "Amber_Tamblyn")


@pytest.fixture(scope="session")
def few_identities() -> tuple[str, ...]:
    return FEW_IDENTITIES


@pytest.fixture
def yunet_env(yunet_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """YuNet from the shared copy, and a private FACESIM_HOME."""
    monkeypatch.setenv("FACESIM_YUNET_MODEL", str(yunet_path))
    monkeypatch.setenv("FACESIM_HOME", str(tmp_path / "home"))
    return yunet_path
