"""Settings: env over YAML over defaults, and errors a person understands."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal.config import ConfigError, load_settings

SECRET = "x" * 40


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return info.value.problems


def test_defaults_are_sqlite_in_the_data_dir_and_no_redis(tmp_path: Path) -> None:
    settings = load_settings({"PORTAL_SECRET_KEY": SECRET, "PORTAL_DATA_DIR": str(tmp_path)})
    assert settings.async_database_url == f"sqlite+aiosqlite:///{tmp_path / 'portal.db'}"
    assert settings.database_dialect == "sqlite"
    assert settings.redis_url is None


def test_malformed_database_url_is_explained() -> None:
    found = problems({"PORTAL_SECRET_KEY": SECRET, "PORTAL_DATABASE_URL": "not a url"})
    assert len(found) == 1
    assert "PORTAL_DATABASE_URL" in found[0]
    assert "not a database URL" in found[0]
    assert "postgresql://" in found[0]


def test_unsupported_database_is_named() -> None:
    found = problems({"PORTAL_SECRET_KEY": SECRET, "PORTAL_DATABASE_URL": "oracle://u:p@db/x"})
    assert "'oracle' is not supported" in found[0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgres://u:p@db:5432/portal", "postgresql+asyncpg://u:p@db:5432/portal"),
        ("postgresql://u@db/portal", "postgresql+asyncpg://u@db/portal"),
        ("sqlite:///tmp/p.db", "sqlite+aiosqlite:///tmp/p.db"),
        ("mariadb://root@db/portal", "mysql+asyncmy://root@db/portal"),
    ],
)
def test_database_urls_get_async_drivers(raw: str, expected: str) -> None:
    settings = load_settings({"PORTAL_SECRET_KEY": SECRET, "PORTAL_DATABASE_URL": raw})
    assert settings.async_database_url == expected


def test_missing_secret_key_outside_demo_mode_is_an_error() -> None:
    found = problems({})
    assert any("PORTAL_SECRET_KEY is not set" in p for p in found)


def test_demo_mode_needs_no_secret_key() -> None:
    assert load_settings({"PORTAL_DEMO": "true"}).demo is True


def test_short_secret_key_is_refused() -> None:
    assert any("too short" in p for p in problems({"PORTAL_SECRET_KEY": "short"}))


def test_unknown_environment_setting_is_an_error_with_a_suggestion() -> None:
    found = problems({"PORTAL_SECRET_KEY": SECRET, "PORTAL_REDIS_ULR": "redis://x"})
    assert found == ["unknown setting PORTAL_REDIS_ULR (did you mean 'PORTAL_REDIS_URL'?)"]


def test_unknown_yaml_setting_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "portal.yaml"
    config.write_text("secret_key: " + SECRET + "\nlisten_port: 80\n")
    found = problems({"PORTAL_CONFIG": str(config)})
    assert len(found) == 1
    assert "unknown setting 'listen_port'" in found[0]


def test_every_problem_is_reported_at_once() -> None:
    found = problems({"PORTAL_DATABASE_URL": "nope", "PORTAL_REDIS_URL": "http://redis"})
    assert len(found) == 3


def test_wrong_type_names_the_variable() -> None:
    assert problems({"PORTAL_SECRET_KEY": SECRET, "PORTAL_PORT": "eighty"}) == [
        "PORTAL_PORT (port): Expected `int`, got `str`"
    ]


def test_environment_overrides_yaml(tmp_path: Path) -> None:
    config = tmp_path / "portal.yaml"
    config.write_text(
        f"secret_key: {SECRET}\nport: 9000\nredis_url: redis://yaml:6379/0\n"
        "models:\n  - name: gpt-4o\n    deployments:\n      - provider: openai\n        model: gpt-4o\n"
        "        api_key: env:OPENAI_API_KEY\n        input_price_per_mtok: '2.5'\n"
    )
    settings = load_settings({"PORTAL_CONFIG": str(config), "PORTAL_PORT": "9100"})
    assert settings.port == 9100
    assert settings.redis_url == "redis://yaml:6379/0"
    assert settings.models[0].deployments[0].api_key == "env:OPENAI_API_KEY"
    assert str(settings.models[0].deployments[0].input_price_per_mtok) == "2.5"


def test_plain_secret_in_model_config_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "portal.yaml"
    config.write_text(
        f"secret_key: {SECRET}\nmodels:\n  - name: m\n    deployments:\n"
        "      - provider: openai\n        model: gpt-4o\n        api_key: sk-live-123\n"
    )
    found = problems({"PORTAL_CONFIG": str(config)})
    assert "never the secret itself" in found[0]


def test_missing_config_file_is_explained(tmp_path: Path) -> None:
    found = problems({"PORTAL_CONFIG": str(tmp_path / "absent.yaml")})
    assert "not a readable file" in found[0]


def test_invalid_yaml_is_explained(tmp_path: Path) -> None:
    config = tmp_path / "portal.yaml"
    config.write_text("secret_key: [unclosed\n")
    assert "not valid YAML" in problems({"PORTAL_CONFIG": str(config)})[0]
