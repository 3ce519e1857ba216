"""Settings: environment variables (``PORTAL_*``) over an optional YAML file, validated at start-up.

Precedence: environment variable > YAML file (``PORTAL_CONFIG``) > default. Every problem found is
reported at once, in words a person can act on, as a :class:`ConfigError`; nothing is checked lazily
at the first request. Unknown setting names (in the YAML file or as ``PORTAL_*`` variables) are errors,
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import os
import re
import ssl
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import yaml
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = [
    "ConfigError",
    "DeploymentConfig",
    "GroupMapping",
    "LdapConfig",
    "ModelConfig",
    "OidcProviderConfig",
    "Settings",
    "StaticKeyConfig",
    "load_settings",
    "parse_listen",
]

ENV_PREFIX = "PORTAL_"
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
    "mysql+asyncmy": "mysql+asyncmy",
}


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every reason, one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class DeploymentConfig(_Strict, frozen=True):
    """One upstream for a public model (LiteLLM ``model_list`` style)."""

    provider: str
    model: str
    api_base: str | None = None
    api_version: str | None = None
    region: str | None = None
    api_key: str | None = None
    """A reference to the secret, never the secret: ``env:NAME`` or ``credential:NAME``."""
    input_price_per_mtok: Decimal | None = None
    output_price_per_mtok: Decimal | None = None
    weight: int = 1
    timeout_s: float = 600.0
    max_retries: int = 2
    tenant: str | None = None
    """Slug of the tenant this deployment overrides the model for (e.g. a per-tenant inference profile)."""


class ModelConfig(_Strict, frozen=True):
    """A public model and its deployments, declared in the YAML file."""

    name: str
    deployments: list[DeploymentConfig]
    mode: str = "chat"
    description: str = ""
    fallbacks: list[str] = []


class StaticKeyLimits(_Strict, frozen=True):
    req_per_min: int | None = None
    tokens_per_min: int | None = None


class StaticKeyConfig(_Strict, frozen=True):
    """A key declared in the YAML file (the COO-LLM seed's ``api_keys:``)."""

    key: str
    allowed_providers: list[str] = msgspec.field(default_factory=lambda: ["*"])
    allowed_models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    tenant: str | None = None
    alias: str = "config key"
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    limits: StaticKeyLimits = msgspec.field(default_factory=StaticKeyLimits)


class OidcProviderConfig(_Strict, frozen=True):
    """An OpenID Connect provider operators sign in with (one button each on the sign-in page)."""

    name: str
    """Short URL-safe name: ``/auth/oidc/<name>/login``."""
    issuer: str
    client_id: str
    client_secret: str
    """A reference: ``env:NAME``."""
    label: str = ""
    scopes: list[str] = msgspec.field(default_factory=lambda: ["openid", "email", "profile"])
    groups_claim: str = "groups"
    use_userinfo: bool = False
    """Also read claims (email, name, groups) from the userinfo endpoint."""
    timeout_s: float = 10.0


class LdapConfig(_Strict, frozen=True):
    """An LDAP directory: search-then-bind with a service account, or direct bind with a DN template.

    ``server`` and ``base_dn`` as in the COO-LLM seed (``server: ldap.company.com``); ``server`` may
    be a URL (``ldap://host:389``, ``ldaps://host:636``).
    """

    server: str
    base_dn: str = ""
    user_search_filter: str = "(uid=%s)"
    """``%s`` is the (escaped) user name, e.g. ``(sAMAccountName=%s)``."""
    user_dn_template: str | None = None
    """Direct bind instead of search, e.g. ``uid=%s,ou=people,dc=example,dc=org``."""
    bind_dn: str | None = None
    bind_password: str | None = None
    """A reference: ``env:NAME``."""
    start_tls: bool = False
    ca_file: str | None = None
    verify_tls: bool = True
    email_attribute: str = "mail"
    name_attribute: str = "cn"
    use_memberof: bool = True
    group_search_base: str | None = None
    group_search_filter: str = "(member=%s)"
    """``%s`` is the user's (escaped) DN; used when ``group_search_base`` is set."""
    group_name_attribute: str = "cn"
    timeout_s: float = 5.0


class GroupMapping(_Strict, frozen=True):
    """An SSO group (OIDC groups claim or LDAP group name/DN) -> a global role and/or a tenant role."""

    group: str
    role: str | None = None
    """``admin``, ``operator`` or ``auditor``."""
    tenant: str | None = None
    """A tenant slug; the user becomes its member with ``tenant_role``."""
    tenant_role: str = "member"


class Settings(_Strict, frozen=True):
    """The effective configuration of one portal process."""

    data_dir: str = "./data"
    database_url: str = ""
    """Empty means a SQLite file ``portal.db`` in ``data_dir``."""
    redis_url: str | None = None
    secret_key: str | None = None
    master_key: str | None = None
    demo: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    admin_listen: str | None = None
    log_level: str = "info"
    log_format: str = "json"
    """``json`` (one JSON object per line, for log shippers) or ``text`` (``portal demo``'s default)."""
    access_log: bool = True
    """One log line per proxied call (logger ``portal.access``), written off the request path."""
    metrics_token: str | None = None
    """When set, ``GET /metrics`` needs ``Authorization: Bearer <token>``."""
    redact_patterns: list[str] = []
    """Extra regular expressions masked in stored prompts and responses."""
    payload_log_max_chars: int = 10_000
    """Stored prompt and response text are cut to this many characters each."""
    secure_cookies: bool = True
    key_cache_ttl_s: float = 30.0
    catalog_refresh_s: float = 15.0
    cache_ttl_s: float = 3600.0
    max_request_bytes: int = 20_000_000
    limits_fail_open: bool = False
    default_max_tokens: int = 1024
    budget_reset_interval_s: float = 30.0
    redis_max_connections: int = 256
    writer_interval_s: float = 1.0
    db_pool_size: int = 10
    models: list[ModelConfig] = []
    api_keys: list[StaticKeyConfig] = []
    oidc_providers: list[OidcProviderConfig] = []
    ldap: LdapConfig | None = None
    group_mappings: list[GroupMapping] = []
    local_login: bool = True
    """Break-glass sign-in with a local account and password (argon2 hashes)."""
    admin_id: str | None = None
    """A break-glass admin account created at start-up (the COO-LLM seed's ``webui.admin_id``)."""
    admin_password: str | None = None
    session_idle_timeout_s: float = 3600.0
    session_absolute_timeout_s: float = 43200.0
    login_max_failures: int = 5
    """Failed sign-ins per account (and 4x that per client address) within 15 minutes."""
    request_log_retention_days: int = 90
    """Delete request-log rows older than this many days (0: keep forever). Rollups stay."""
    audit_retention_days: int = 0
    """Delete audit events older than this many days (0: keep forever); the hash chain stays verifiable."""
    retention_batch_size: int = 5000
    """Rows per DELETE; each batch is its own short transaction."""
    retention_archive_dir: str | None = None
    """Write each batch as gzipped JSON lines here before deleting it (none: no archive)."""
    retention_interval_s: float = 3600.0
    """How often each instance runs retention (one instance at a time does the work)."""
    tls_cert_file: str | None = None
    """PEM certificate (chain) served on the main and admin listeners; HTTPS when set with the key."""
    tls_key_file: str | None = None
    shutdown_grace_s: float = 30.0
    """On SIGTERM, how long in-flight requests (streams included) may run before they are cut."""

    @property
    def tls(self) -> bool:
        """Whether ``portal serve`` speaks HTTPS."""
        return self.tls_cert_file is not None and self.tls_key_file is not None

    @property
    def async_database_url(self) -> str:
        """The database URL with its async driver (``sqlite+aiosqlite``, ``postgresql+asyncpg``...)."""
        return normalize_database_url(self.database_url or _default_sqlite_url(self.data_dir))

    @property
    def database_dialect(self) -> str:
        """``sqlite``, ``postgresql`` or ``mysql``."""
        return make_url(self.async_database_url).get_backend_name()


_SCALAR_FIELDS: dict[str, str] = {
    f.name: f.name
    for f in msgspec.structs.fields(Settings)
    if f.name not in {"models", "api_keys", "oidc_providers", "ldap", "group_mappings"}
}
_ALLOWED_EXTRA_ENV = {"CONFIG"}
_LIST_ENV = {"redact_patterns"}
"""List settings given as environment variables: a JSON array, or one item per line."""


def _default_sqlite_url(data_dir: str) -> str:
    return f"sqlite+aiosqlite:///{Path(data_dir).expanduser().resolve() / 'portal.db'}"


def normalize_database_url(raw: str) -> str:
    """Return ``raw`` with an async driver, or raise ``ValueError`` with a readable reason."""
    try:
        url: URL = make_url(raw)
    except ArgumentError:
        raise ValueError(
            f"{raw!r} is not a database URL; expected for example "
            "postgresql://user:password@host:5432/portal or sqlite:///data/portal.db"
        ) from None
    driver = _ASYNC_DRIVERS.get(url.drivername)
    if driver is None:
        supported = "sqlite, postgresql, mysql/mariadb"
        raise ValueError(f"database {url.drivername!r} is not supported (supported: {supported})")
    if driver != "sqlite+aiosqlite" and not url.host:
        raise ValueError(f"the database URL {url.render_as_string()!r} names no host")
    return url.set(drivername=driver).render_as_string(hide_password=False)


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _read_yaml(path: str) -> dict[str, Any]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError([f"PORTAL_CONFIG points to {path!r}, which is not a readable file"])
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError([f"the config file {path!r} is not valid YAML: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"the config file {path!r} must hold a mapping of setting names to values"])
    return data


def _env_list(name: str, value: str, problems: list[str]) -> list[str]:
    if value.lstrip().startswith("["):
        try:
            items = msgspec.json.decode(value, type=list[str])
        except msgspec.DecodeError as exc:
            problems.append(f"{name}: not a JSON array of strings ({exc})")
            return []
        return items
    return [line for line in value.splitlines() if line.strip()]


def _env_values(environ: Mapping[str, str], problems: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    known = [f"{ENV_PREFIX}{n.upper()}" for n in _SCALAR_FIELDS]
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        field = name[len(ENV_PREFIX) :].lower()
        if field.upper() in _ALLOWED_EXTRA_ENV:
            continue
        if field not in _SCALAR_FIELDS:
            problems.append(f"unknown setting {name}{_suggest(name, known)}")
            continue
        values[field] = _env_list(name, value, problems) if field in _LIST_ENV else value
    return values


def _convert(data: dict[str, Any], problems: list[str]) -> Settings | None:
    try:
        return msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if "unknown field" in message:
            field = message.split("`")[1] if "`" in message else message
            fields = [f.name for f in msgspec.structs.fields(Settings)]
            problems.append(f"unknown setting {field!r}{_suggest(field, fields)} ({message})")
        else:
            path = message.rsplit("at `$.", 1)[-1].rstrip("`") if "at `$." in message else ""
            field = path.split(".")[0].split("[")[0]
            where = f"PORTAL_{field.upper()} ({path})" if field in _SCALAR_FIELDS else (path or "settings")
            problems.append(f"{where}: {message.split(' - at ')[0]}")
        return None


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) -> (host, port); a ``ValueError`` says what is wrong."""
    host, sep, port_text = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r} is not host:port, e.g. 127.0.0.1:8001")
    return host, int(port_text)


def _validate(settings: Settings, problems: list[str]) -> None:
    try:
        normalize_database_url(settings.database_url or _default_sqlite_url(settings.data_dir))
    except ValueError as exc:
        problems.append(f"PORTAL_DATABASE_URL: {exc}")
    if settings.redis_url is not None and not settings.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        problems.append(
            f"PORTAL_REDIS_URL: {settings.redis_url!r} is not a Redis URL; expected redis://host:6379/0"
        )
    if not settings.demo:
        if not settings.secret_key:
            problems.append(
                "PORTAL_SECRET_KEY is not set; it signs sessions and encrypts provider credentials. "
                'Generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))" '
                "(or run `portal demo` for a local trial)"
            )
        elif len(settings.secret_key) < 32:
            problems.append("PORTAL_SECRET_KEY is too short: use at least 32 random characters")
    if settings.master_key is not None and len(settings.master_key) < 16:
        problems.append("PORTAL_MASTER_KEY is too short: use at least 16 random characters")
    if not 1 <= settings.port <= 65535:
        problems.append(f"PORTAL_PORT must be between 1 and 65535, not {settings.port}")
    if settings.workers < 1:
        problems.append("PORTAL_WORKERS must be at least 1")
    if settings.admin_listen is not None:
        try:
            _, admin_port = parse_listen(settings.admin_listen)
        except ValueError as exc:
            problems.append(f"PORTAL_ADMIN_LISTEN: {exc}")
        else:
            if admin_port == settings.port:
                problems.append(
                    f"PORTAL_ADMIN_LISTEN uses port {admin_port}, the public port: "
                    "give the admin listener its own port"
                )
    if settings.shutdown_grace_s < 0:
        problems.append("PORTAL_SHUTDOWN_GRACE_S must not be negative")
    _validate_tls(settings, problems)
    if settings.log_level.lower() not in {"debug", "info", "warning", "error", "critical"}:
        problems.append(f"PORTAL_LOG_LEVEL {settings.log_level!r} is not one of debug, info, warning, error")
    _validate_ops(settings, problems)
    names = [m.name for m in settings.models]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        problems.append(f"models: the model name(s) {', '.join(duplicated)} are declared more than once")
    for model in settings.models:
        if not model.deployments:
            problems.append(f"models: {model.name!r} has no deployments")
        for dep in model.deployments:
            if dep.api_key and not dep.api_key.startswith(("env:", "credential:")):
                problems.append(
                    f"models: {model.name!r}: api_key must be a reference (env:NAME or credential:NAME), "
                    "never the secret itself"
                )
            if dep.weight < 0:
                problems.append(f"models: {model.name!r}: weight must not be negative")
    _validate_retention(settings, problems)
    _validate_auth(settings, problems)


def _validate_retention(settings: Settings, problems: list[str]) -> None:
    for name in ("request_log_retention_days", "audit_retention_days"):
        if getattr(settings, name) < 0:
            problems.append(f"PORTAL_{name.upper()} must be 0 (keep forever) or a number of days")
    if not 1 <= settings.retention_batch_size <= 20_000:
        problems.append("PORTAL_RETENTION_BATCH_SIZE must be between 1 and 20000")
    if settings.retention_interval_s < 1:
        problems.append("PORTAL_RETENTION_INTERVAL_S must be at least 1 second")


def _no_passphrase() -> bytes:
    return b""  # an encrypted key fails here instead of prompting on a terminal nobody watches


def _validate_tls(settings: Settings, problems: list[str]) -> None:
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if (cert is None) != (key is None):
        problems.append("PORTAL_TLS_CERT_FILE and PORTAL_TLS_KEY_FILE go together: set both or neither")
        return
    if cert is None or key is None:
        return
    unreadable = False
    for name, path in (("PORTAL_TLS_CERT_FILE", cert), ("PORTAL_TLS_KEY_FILE", key)):
        file = Path(path).expanduser()
        if not file.is_file() or not os.access(file, os.R_OK):
            problems.append(f"{name}: {path!r} is not a readable file")
            unreadable = True
    if unreadable:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            Path(cert).expanduser(), Path(key).expanduser(), password=_no_passphrase
        )
    except (ssl.SSLError, ValueError) as exc:
        problems.append(
            f"PORTAL_TLS_CERT_FILE / PORTAL_TLS_KEY_FILE: {cert!r} and {key!r} are not a PEM certificate "
            f"and its matching unencrypted private key ({exc})"
        )


def _validate_ops(settings: Settings, problems: list[str]) -> None:
    if settings.log_format not in {"json", "text"}:
        problems.append(f"PORTAL_LOG_FORMAT {settings.log_format!r} is not json or text")
    if settings.metrics_token is not None and len(settings.metrics_token) < 16:
        problems.append("PORTAL_METRICS_TOKEN is too short: use at least 16 random characters")
    for pattern in settings.redact_patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"PORTAL_REDACT_PATTERNS: {pattern!r} is not a regular expression ({exc})")
    if not 100 <= settings.payload_log_max_chars <= 10_000:
        problems.append("PORTAL_PAYLOAD_LOG_MAX_CHARS must be between 100 and 10000 (the column size)")


def _validate_auth(settings: Settings, problems: list[str]) -> None:
    names = [p.name for p in settings.oidc_providers]
    for provider in settings.oidc_providers:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", provider.name):
            problems.append(
                f"oidc_providers: name {provider.name!r} must be lowercase letters, digits, dashes"
            )
        if names.count(provider.name) > 1:
            problems.append(f"oidc_providers: {provider.name!r} is declared more than once")
        if not provider.issuer.startswith(("https://", "http://")):
            problems.append(f"oidc_providers: {provider.name!r}: issuer must be an http(s) URL")
        if not provider.client_secret.startswith("env:"):
            problems.append(
                f"oidc_providers: {provider.name!r}: client_secret must be a reference (env:NAME), "
                "never the secret itself"
            )
    if settings.ldap is not None:
        ldap = settings.ldap
        if ldap.bind_password is not None and not ldap.bind_password.startswith("env:"):
            problems.append("ldap: bind_password must be a reference (env:NAME), never the secret itself")
        if ldap.user_dn_template is None and "%s" not in ldap.user_search_filter:
            problems.append("ldap: user_search_filter needs %s where the user name goes, e.g. (uid=%s)")
        if ldap.user_dn_template is not None and "%s" not in ldap.user_dn_template:
            problems.append("ldap: user_dn_template needs %s where the user name goes")
    for mapping in settings.group_mappings:
        if mapping.role not in {None, "admin", "operator", "auditor"}:
            problems.append(f"group_mappings: {mapping.group!r}: role must be admin, operator or auditor")
        if mapping.tenant_role not in {"tenant_admin", "member"}:
            problems.append(f"group_mappings: {mapping.group!r}: tenant_role must be tenant_admin or member")
        if mapping.role is None and mapping.tenant is None:
            problems.append(f"group_mappings: {mapping.group!r} maps to neither a role nor a tenant")
    if (settings.admin_id is None) != (settings.admin_password is None):
        problems.append("PORTAL_ADMIN_ID and PORTAL_ADMIN_PASSWORD go together: set both or neither")
    if settings.admin_password is not None and len(settings.admin_password) < 12:
        problems.append("PORTAL_ADMIN_PASSWORD is too short: use at least 12 characters")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read, merge and validate the settings; raise :class:`ConfigError` listing every problem."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    data: dict[str, Any] = {}
    config_path = env.get(f"{ENV_PREFIX}CONFIG")
    if config_path:
        data.update(_read_yaml(config_path))
    data.update(_env_values(env, problems))
    data.update({k: v for k, v in overrides.items() if v is not None})
    settings = _convert(data, problems)
    if settings is not None:
        _validate(settings, problems)
    if problems:
        raise ConfigError(problems)
    assert settings is not None
    return settings
