"""Settings come from the environment with the SHAREDCARE_ prefix, and are all documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from sharedcare.config import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "settings.md"


def test_defaults_use_embedded_sqlite_under_var() -> None:
    settings = Settings()
    assert settings.resolved_database_url == "sqlite:///var/sharedcare.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("SHAREDCARE_PORT", "9001")
    monkeypatch.setenv("SHAREDCARE_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.resolved_database_url == "postgresql://u@h/db"
    assert settings.port == 9001
    assert settings.log_level == "DEBUG"


def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHAREDCARE_PORT", "70000")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_every_setting_is_documented() -> None:
    """Fails when a setting is added without a row in docs/reference/settings.md."""
    documented = set(re.findall(r"`(SHAREDCARE_[A-Z_]+)`", DOC.read_text()))
    expected = {f"SHAREDCARE_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "document these settings in docs/reference/settings.md"
    assert documented - expected == set(), "these documented settings no longer exist"
