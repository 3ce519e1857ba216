"""The ``portal`` command: serve, migrate, seed-key, demo, configuration checks, and the management
groups ``tenants``, ``users``, ``keys``, ``models``, ``audit`` and ``retention`` (in ``portal/cli_*.py``)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from portal.cli_audit import audit as audit_commands
from portal.cli_keys import keys
from portal.cli_models import models
from portal.cli_retention import retention
from portal.cli_tenants import tenants
from portal.cli_users import users
from portal.config import ConfigError, Settings, load_settings

__all__ = ["main"]

T = TypeVar("T")
_REDACTED = {"secret_key", "master_key", "metrics_token"}


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        click.echo(f"portal: {exc}", err=True)
        sys.exit(2)


async def _with_session(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from portal.db.engine import create_engine, create_session_factory

    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


def _migrate(settings: Settings) -> None:
    from portal.db.migrate import upgrade

    if settings.database_dialect == "sqlite":
        Path(settings.data_dir).expanduser().mkdir(parents=True, exist_ok=True)
    upgrade(settings.async_database_url)


def _serve(settings: Settings) -> None:
    """Run uvicorn (with Prometheus multiprocess mode set up for several workers)."""
    from portal.ops import multiproc

    created = multiproc.prepare(settings.workers)
    try:
        _run_uvicorn(settings)
    finally:
        multiproc.cleanup(created)


def _run_uvicorn(settings: Settings) -> None:
    """Run uvicorn; with ``admin_listen``, one server on two sockets (the app tells the doors apart).

    HTTPS on both listeners when ``tls_cert_file``/``tls_key_file`` are set. On SIGTERM uvicorn stops
    accepting, lets in-flight requests (streams included) finish for up to ``shutdown_grace_s``, then
    runs the app's shutdown, which flushes the spend writer.
    """
    import uvicorn

    from portal.config import parse_listen
    from portal.ops.logs import logging_config
    from portal.supervisor import Supervisor

    os.environ.update({"PORTAL_HOST": settings.host, "PORTAL_PORT": str(settings.port)})
    options: dict[str, Any] = {
        "factory": True,
        "workers": settings.workers,
        "log_level": settings.log_level.lower(),
        "log_config": logging_config(settings.log_level, settings.log_format),
        "proxy_headers": True,
        "server_header": False,
        "access_log": False,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        "ssl_certfile": settings.tls_cert_file,
        "ssl_keyfile": settings.tls_key_file,
    }
    app = "portal.app:create_app_from_env"
    if not settings.admin_listen and settings.workers == 1:
        uvicorn.run(app, host=settings.host, port=settings.port, **options)
        return
    config = uvicorn.Config(app, host=settings.host, port=settings.port, **options)
    sockets = [config.bind_socket()]
    if settings.admin_listen:
        scheme = "https" if settings.tls else "http"
        admin_host, admin_port = parse_listen(settings.admin_listen)
        # Same logging options: every Config re-applies uvicorn's logging setup.
        admin = uvicorn.Config(
            app,
            host=admin_host,
            port=admin_port,
            log_level=options["log_level"],
            log_config=options["log_config"],
            access_log=False,
        )
        sockets.append(admin.bind_socket())
        click.echo(
            f"portal: public listener {scheme}://{settings.host}:{settings.port} (/v1 and health only), "
            f"admin listener {scheme}://{admin_host}:{admin_port}",
            err=True,
        )
    if settings.workers > 1:
        Supervisor(config, sockets=sockets).run()
    else:
        uvicorn.Server(config).run(sockets=sockets)


@click.group()
@click.version_option(package_name="portal")
def main() -> None:
    """portal: a self-hosted LLM gateway with an operator portal."""


@main.command()
@click.option("--host", default=None, help="Address to listen on (PORTAL_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (PORTAL_PORT).")
@click.option("--workers", type=int, default=None, help="Worker processes (PORTAL_WORKERS).")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the proxy, the admin API and the portal."""
    settings = _settings(host=host, port=port, workers=workers)
    if workers:
        os.environ["PORTAL_WORKERS"] = str(workers)
    _serve(settings)


@main.command()
def migrate() -> None:
    """Apply database migrations up to the latest version."""
    settings = _settings()
    _migrate(settings)
    click.echo(f"database is at the latest schema ({settings.database_dialect})")


@main.command("seed-key")
@click.option("--key", "secret", default=None, help="Use this value instead of generating one (>= 8 chars).")
@click.option("--alias", default="seeded admin key", show_default=True)
@click.option(
    "--role",
    type=click.Choice(["admin", "viewer", "auditor"]),
    default="admin",
    show_default=True,
    help="Role of the admin key.",
)
def seed_key(secret: str | None, alias: str, role: str) -> None:
    """Create an admin API key and print it once; only its hash is stored."""
    from portal import audit
    from portal.cli_common import change
    from portal.db.models import AdminRole
    from portal.keys.service import create_key

    async def work(session: Any, actor: audit.Actor) -> str:
        new = await create_key(session, actor, alias=alias, role=AdminRole(role), secret=secret, source="cli")
        return new.secret

    value = change("seed-key", work)
    click.echo(value)
    click.echo(f"({role} key created; store it now: it is not shown again)", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--data-dir", default=None, help="Where the SQLite file and the demo secret live (default ./data)."
)
@click.option("--no-serve", is_flag=True, help="Prepare the database and demo data, then exit.")
def demo(host: str, port: int, data_dir: str | None, no_serve: bool) -> None:
    """Run a local trial: SQLite, a demo tenant and key, and an offline model."""
    from portal.demo import DEMO_KEY, DEMO_MASTER_KEY, DEMO_MODEL, demo_secret_key, seed_demo

    directory = Path(data_dir or os.environ.get("PORTAL_DATA_DIR", "./data")).expanduser().resolve()
    env = {
        "PORTAL_DEMO": "true",
        "PORTAL_DATA_DIR": str(directory),
        "PORTAL_SECRET_KEY": os.environ.get("PORTAL_SECRET_KEY") or demo_secret_key(directory),
        "PORTAL_MASTER_KEY": os.environ.get("PORTAL_MASTER_KEY") or DEMO_MASTER_KEY,
        "PORTAL_SECURE_COOKIES": "false",
        "PORTAL_LOG_FORMAT": os.environ.get("PORTAL_LOG_FORMAT", "text"),
    }
    os.environ.update(env)
    settings = _settings(host=host, port=port)
    _migrate(settings)
    asyncio.run(_with_session(settings, seed_demo))
    base = f"http://{host}:{port}"
    click.echo(
        f"""
portal demo is ready ({settings.database_dialect} at {directory}).

  demo key      {DEMO_KEY}
  master key    {settings.master_key}
  model         {DEMO_MODEL} (offline mock provider)

  curl {base}/v1/chat/completions -H "Authorization: Bearer {DEMO_KEY}" \\
    -H "Content-Type: application/json" \\
    -d '{{"model": "{DEMO_MODEL}", "messages": [{{"role": "user", "content": "Hello"}}]}}'
"""
    )
    if not no_serve:
        _serve(settings)


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
def config_check() -> None:
    """Validate the settings and print the effective values (secrets redacted)."""
    settings = _settings()
    data = msgspec.to_builtins(settings)
    for name in _REDACTED:
        if data.get(name):
            data[name] = "<redacted>"
    click.echo(msgspec.json.format(msgspec.json.encode(data)).decode())


for _group in (tenants, users, keys, models, audit_commands, retention):
    main.add_command(_group)


@config.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="Output format.",
)
def config_export(fmt: str) -> None:
    """Print the effective configuration for a backup: settings plus the database catalog, secrets redacted
    (the same document as ``GET /admin/v1/config``)."""
    from portal.ops.config_export import config_document, to_yaml

    settings = _settings()

    async def work(session: Any) -> dict[str, Any]:
        return await config_document(session, settings)

    try:
        document = asyncio.run(_with_session(settings, work))
    except Exception as exc:  # an unreachable or unmigrated database: one clear line, no traceback
        click.echo(f"portal: cannot read the database: {type(exc).__name__}: {exc}"[:500], err=True)
        sys.exit(1)
    if fmt == "json":
        click.echo(msgspec.json.format(msgspec.json.encode(document)).decode())
    else:
        click.echo(to_yaml(document), nl=False)
