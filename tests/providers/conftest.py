"""Registers the fake-upstream fixtures (a no-op when the root conftest already did)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.import_plugin("tests.fakes.fixtures")
