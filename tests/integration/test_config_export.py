"""``portal config export``: the effective configuration for a backup, secrets redacted, the same
document as ``GET /admin/v1/config`` (the COO-LLM seed's backup procedure)."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from click.testing import CliRunner

from portal.cli import main
from tests.conftest import TEST_SECRET


@pytest.mark.usefixtures("clean_env")
def test_export_redacts_secrets(database_url: str, tmp_path: object) -> None:
    config = os.path.join(str(tmp_path), "portal.yaml")
    with open(config, "w") as handle:
        yaml.safe_dump(
            {
                "models": [{"name": "exported", "deployments": [{"provider": "mock", "model": "m1"}]}],
                "api_keys": [{"key": "sk-static-export-key-0000000001"}],
            },
            handle,
        )
    env = {
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_SECRET_KEY": TEST_SECRET,
        "PORTAL_MASTER_KEY": "sk-export-master-key-000",
        "PORTAL_CONFIG": config,
    }
    runner = CliRunner()
    as_yaml = runner.invoke(main, ["config", "export"], env=env)
    assert as_yaml.exit_code == 0, as_yaml.stderr
    document = yaml.safe_load(as_yaml.stdout)
    as_json = runner.invoke(main, ["config", "export", "--format", "json"], env=env)
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["models"] == document["models"]
    for secret in (TEST_SECRET, "sk-export-master-key-000", "sk-static-export-key-0000000001"):
        assert secret not in as_yaml.stdout
        assert secret not in as_json.stdout
    assert document["master_key"] == "<redacted>"
    assert [m["name"] for m in document["models"]] == ["exported"]
    assert "database" in document


@pytest.mark.usefixtures("clean_env")
def test_export_without_a_database_is_one_clear_line(tmp_path: object) -> None:
    env = {"PORTAL_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "PORTAL_SECRET_KEY": TEST_SECRET}
    result = CliRunner().invoke(main, ["config", "export"], env=env)
    assert result.exit_code == 1
    assert result.stderr.startswith("portal: cannot read the database")
    assert "Traceback" not in result.stderr
