"""The OpenAPI document of the admin API and its docs page: an OpenAPI 3.1 document listing the ``/api``
operations (each described) with the bearer scheme, and a Swagger UI page whose script, styles and icon
all come from our own ``/static`` (the gateway may run without internet), each actually served."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from portal.paths import STATIC_DIR
from tests.api.conftest import AdminApi

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def spec_url(admin_api: AdminApi) -> str:
    """Where the app serves the JSON document (``openapi.json`` under the OpenAPI path, below ``/api``)."""
    config = admin_api.app.openapi_config
    assert config is not None
    assert config.path is not None
    assert config.path.startswith("/api")
    return f"{config.path.rstrip('/')}/openapi.json"


async def fetch_spec(admin_api: AdminApi) -> dict[str, Any]:
    async with admin_api.client(None) as anonymous:
        response = await anonymous.get(spec_url(admin_api))
    assert response.status_code == 200, response.text
    assert "json" in response.headers["content-type"]
    spec: dict[str, Any] = response.json()
    return spec


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


async def test_document_is_openapi_31_with_the_api_paths(admin_api: AdminApi) -> None:
    spec = await fetch_spec(admin_api)
    assert re.fullmatch(r"3\.1\.\d+", spec["openapi"])
    assert spec["info"]["title"] == "portal admin API"
    assert spec["info"]["version"]
    for path in ("/api/tenants", "/api/spend", "/api/logs", "/api/logs/{request_id}", "/api/audit"):
        assert path in spec["paths"], f"{path} missing from {sorted(spec['paths'])}"
    assert "get" in spec["paths"]["/api/spend"]
    parameters = {p["name"] for p in spec["paths"]["/api/logs"]["get"]["parameters"]}
    assert {
        "key",
        "tenant",
        "model",
        "status",
        "ok",
        "cached",
        "start",
        "end",
        "cursor",
        "limit",
    } <= parameters

    scheme = spec["components"]["securitySchemes"]["adminKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")

    operation_ids: list[str] = []
    for path, method, operation in operations(spec):
        assert path.startswith("/"), path
        assert operation.get("responses"), f"{method} {path} has no responses"
        if "operationId" in operation:
            operation_ids.append(operation["operationId"])
        if path.startswith("/api/"):
            assert {"adminKey": []} in operation.get("security", spec.get("security", [])), (
                f"{method.upper()} {path} does not declare the admin key"
            )
    assert len(operation_ids) == len(set(operation_ids)), "operation ids are not unique"

    schemas = spec.get("components", {}).get("schemas", {})
    for ref in set(refs(spec)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, f"dangling {ref}"


async def test_every_api_operation_has_a_summary_or_description(admin_api: AdminApi) -> None:
    spec = await fetch_spec(admin_api)
    api = [(path, method, op) for path, method, op in operations(spec) if path.startswith("/api/")]
    assert len(api) >= 6
    undocumented = [
        f"{method.upper()} {path}"
        for path, method, op in api
        if not (op.get("summary") or op.get("description"))
    ]
    assert undocumented == [], f"operations without a summary or description: {undocumented}"


async def test_docs_page_loads_only_local_assets_and_each_is_served(admin_api: AdminApi) -> None:
    async with admin_api.client(None) as anonymous:
        page = await anonymous.get("/api/docs")
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "SwaggerUIBundle" in html
        tags = re.findall(r"<(?:script|link)\b[^>]*>", html, flags=re.IGNORECASE)
        assets = [m.group(2) for tag in tags if (m := re.search(r"""\b(src|href)=["']([^"']+)["']""", tag))]
        assert assets, html[:500]
        for tag in tags:
            assert "//" not in tag, f"remote asset: {tag}"
        assert all(url.startswith("/static/") for url in assets), assets
        names = {url.rsplit("/", 1)[-1] for url in assets}
        assert {"swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"} <= names
        for url in assets:
            response = await anonymous.get(url)
            assert response.status_code == 200, url
            kind = next(v for k, v in CONTENT_TYPES.items() if url.endswith(k))
            assert kind in response.headers["content-type"], (url, response.headers["content-type"])
            assert response.content == (STATIC_DIR / url.removeprefix("/static/")).read_bytes(), url
        license_text = await anonymous.get("/static/vendor/swagger-ui/LICENSE")
        assert license_text.status_code == 200
        assert "Apache License" in license_text.text


async def test_docs_spec_embeds_the_same_document(admin_api: AdminApi) -> None:
    spec = await fetch_spec(admin_api)
    async with admin_api.client(None) as anonymous:
        html = (await anonymous.get("/api/docs")).text
    for path in ("/api/spend", "/api/logs", "/api/audit"):
        assert f'"{path}"' in html
    assert spec["info"]["title"] in html
