"""The OpenAPI schema describes every API route accurately, and the docs page renders."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import URLResolver, get_resolver
from drf_spectacular.validation import validate_schema

TENANT_OPERATIONS = {
    "/api/v1/organizations/": {"get", "post"},
    "/api/v1/organizations/{org_id}/": {"get", "put", "patch", "delete"},
    "/api/v1/organizations/{org_id}/users/": {"get", "post"},
    "/api/v1/organizations/{org_id}/users/{pbx_user_id}/": {"get", "put", "patch", "delete"},
    "/api/v1/organizations/{org_id}/sms-numbers/": {"get", "post"},
    "/api/v1/organizations/{org_id}/sms-numbers/{sms_number_id}/": {
        "get",
        "put",
        "patch",
        "delete",
    },
}
HTTP_METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


def _routed_api_operations() -> dict[str, set[str]]:
    """Every DRF route under /api/v1/ in the URL conf, with the methods its view implements.

    Views excluded from the schema on purpose (webhook receivers: third parties post to them,
    API clients don't call them) are left out.
    """
    from rest_framework.views import APIView

    found: dict[str, set[str]] = {}

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
                continue
            view = getattr(pattern.callback, "cls", None)
            if not (isinstance(view, type) and issubclass(view, APIView)):
                continue
            if not route.startswith("api/v1/") or getattr(view, "schema", True) is None:
                continue
            path = "/" + _CONVERTER.sub(r"{\1}", route)
            methods = {m for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)}
            found.setdefault(path, set()).update(methods)

    walk(get_resolver().url_patterns, "")
    return found


@pytest.fixture
def schema(client: Any) -> dict[str, Any]:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_schema_is_valid_openapi(schema: dict[str, Any]) -> None:
    validate_schema(schema)


def test_schema_has_every_api_route_and_method(schema: dict[str, Any]) -> None:
    documented = {
        p: set(ops) & HTTP_METHODS for p, ops in schema["paths"].items() if p.startswith("/api/v1/")
    }
    routed = _routed_api_operations()

    assert TENANT_OPERATIONS.items() <= routed.items()
    assert documented == routed


def test_every_operation_is_tagged_and_documents_its_errors(schema: dict[str, Any]) -> None:
    for path, operations in _routed_api_operations().items():
        for method in operations:
            operation = schema["paths"][path][method]
            assert operation["tags"], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            if method in ("post", "put", "patch"):
                assert "400" in operation["responses"], (method, path)


def test_lists_are_paginated_and_searchable_where_documented(schema: dict[str, Any]) -> None:
    for path in (
        "/api/v1/organizations/",
        "/api/v1/organizations/{org_id}/users/",
        "/api/v1/organizations/{org_id}/sms-numbers/",
    ):
        ok = schema["paths"][path]["get"]["responses"]["200"]
        ref = ok["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert {"count", "next", "previous", "results"} <= set(
            schema["components"]["schemas"][ref]["properties"]
        )
    for path in ("/api/v1/organizations/", "/api/v1/organizations/{org_id}/users/"):
        names = {p["name"] for p in schema["paths"][path]["get"]["parameters"]}
        assert {"search", "page", "page_size"} <= names


def test_organization_output_has_the_webhook_key_and_no_secret(schema: dict[str, Any]) -> None:
    properties = schema["components"]["schemas"]["OrganizationOutput"]["properties"]

    assert "webhook_key" in properties
    assert not any("secret" in name for name in properties)


def test_write_operations_require_the_write_scope(schema: dict[str, Any]) -> None:
    for path, operations in _routed_api_operations().items():
        for method in operations:
            security = schema["paths"][path][method]["security"]
            expected = ["read"] if method == "get" else ["write"]
            assert {"oauth2": expected} in security, (method, path)
    flows = schema["components"]["securitySchemes"]["oauth2"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "/o/token/"


def test_schema_generation_has_no_warnings(tmp_path: Path) -> None:
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml")
    )


def test_docs_page_renders(client: Any) -> None:
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
