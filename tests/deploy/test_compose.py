"""deploy/compose.yaml and the nginx config: the stack's shape (services, shared secret, migrate first,
health-gated start) checked from the parsed YAML, the portal environment validated by the real settings
loader, and the nginx config checked by Debian's ``nginx -t``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from portal.config import ConfigError, load_settings
from tests.deploy.processes import nginx_binary, nginx_test_copy

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTANCES = ("portal-1", "portal-2")
_INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` with ``env``."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in env or ":-" in match.group(0), f"${{{name}}} is not set in .env.example"
        return env.get(name, match.group(0).split(":-", 1)[-1].rstrip("}"))

    return _INTERPOLATION.sub(one, value)


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_every_service_has_an_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "migrate", *INSTANCES, "nginx", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
        image = service.get("image", "")
        assert ":latest" not in image or "PORTAL_IMAGE" in image, f"{name}: pin the image version"


def test_instances_share_one_image_secret_and_backends(compose: dict[str, Any]) -> None:
    services = compose["services"]
    first, second = (services[name] for name in INSTANCES)
    assert first == second, "the instances must be configured identically"
    assert first["image"] == services["migrate"]["image"]
    assert first["build"]["context"] == ".."
    assert (DEPLOY / first["build"]["context"] / first["build"]["dockerfile"]).is_file()
    assert first["env_file"] == ".env", "PORTAL_SECRET_KEY comes from the shared env file"
    assert "PORTAL_SECRET_KEY" not in first["environment"]
    env = first["environment"]
    assert env["PORTAL_DATABASE_URL"].startswith("postgresql://portal:")
    assert env["PORTAL_DATABASE_URL"].endswith("@postgres:5432/portal")
    assert env["PORTAL_REDIS_URL"] == "redis://redis:6379/0"
    assert first["command"] == ["serve"]
    assert "ports" not in first, "instances are reached through nginx only"


def test_instances_start_after_migrate_and_healthy_backends(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in INSTANCES:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert services["nginx"]["depends_on"][name]["condition"] == "service_healthy"
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name


def test_stop_grace_period_outlasts_the_shutdown_grace(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    grace = float(env_example["PORTAL_SHUTDOWN_GRACE_S"])
    for name in INSTANCES:
        assert seconds(compose["services"][name]["stop_grace_period"]) > grace + 5


def test_the_portal_environment_is_accepted_by_the_settings_loader(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    """What an instance sees (.env.example + compose's environment) passes portal's own validation."""
    filled = {**env_example, "PORTAL_SECRET_KEY": "s" * 48, "POSTGRES_PASSWORD": "pw"}
    service = compose["services"]["portal-1"]
    env = {name: value for name, value in filled.items() if name.startswith("PORTAL_")}
    env |= {name: interpolate(str(value), filled) for name, value in service["environment"].items()}
    mounted = {v.split(":")[1]: DEPLOY / v.split(":")[0] for v in service["volumes"]}
    env["PORTAL_CONFIG"] = str(mounted[env["PORTAL_CONFIG"]])
    settings = load_settings({k: v for k, v in env.items() if k.startswith("PORTAL_")})
    assert settings.database_dialect == "postgresql"
    assert settings.admin_listen == "0.0.0.0:8001"
    assert [m.name for m in settings.models] == ["mock-model"]


def test_the_example_secrets_must_be_filled_in(compose: dict[str, Any], env_example: dict[str, str]) -> None:
    """An unedited .env.example starts nothing: portal refuses an empty secret key, compose an empty
    database or Grafana password (``${NAME:?message}``)."""
    assert env_example["PORTAL_SECRET_KEY"] == ""
    with pytest.raises(ConfigError, match="PORTAL_SECRET_KEY is not set"):
        load_settings({"PORTAL_SECRET_KEY": env_example["PORTAL_SECRET_KEY"]})
    for name, where in (("POSTGRES_PASSWORD", "postgres"), ("GRAFANA_ADMIN_PASSWORD", "grafana")):
        assert env_example[name] == ""
        assert f"${{{name}:?" in yaml.safe_dump(compose["services"][where]["environment"]), name


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is missing"


def test_only_nginx_faces_the_outside(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if name == "nginx" and port == "8080:80":
                continue
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    main = nginx_test_copy(tmp_path)
    result = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(main)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_image_knows_the_resolve_flag(compose: dict[str, Any]) -> None:
    """``server ... resolve`` (re-resolving recreated instances) is in open-source nginx since 1.27.3;
    the 1.28 stable line has it."""
    version = compose["services"]["nginx"]["image"].split(":")[1].split("-")[0]
    assert tuple(map(int, version.split("."))) >= (1, 28), version


def test_nginx_streams_and_forwards_the_client_address() -> None:
    conf = (DEPLOY / "nginx" / "portal.conf").read_text()
    directives = {line.strip().rstrip(";") for line in conf.splitlines() if not line.strip().startswith("#")}
    assert "proxy_buffering off" in directives, "SSE streams must not be buffered"
    assert "proxy_set_header X-Forwarded-For $remote_addr" in directives
    assert "proxy_set_header X-Forwarded-Proto $scheme" in directives
    assert "proxy_http_version 1.1" in directives
    assert any(
        d.startswith("proxy_read_timeout") and int(d.split()[1].rstrip("s")) >= 300 for d in directives
    )
    assert "proxy_next_upstream error timeout" in directives
    upstream = re.search(r"upstream portal_public \{(.*?)\}", conf, re.S)
    assert upstream is not None
    assert re.findall(
        r"server (portal-\d):8000 max_fails=\d+ fail_timeout=\d+s resolve;", upstream.group(1)
    ) == [
        "portal-1",
        "portal-2",
    ]
    assert re.search(r"location = /metrics \{\s*return 404;", conf), "/metrics must not face the internet"
