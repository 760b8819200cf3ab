"""Validates JSON API responses against the OpenAPI schema the API itself serves."""

from __future__ import annotations

import re
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from django.test import Client
from openapi_schema_validator import OAS31Validator

API_PREFIX = "/api/v1"


@cache
def _served(_key: str = "") -> dict[str, Any]:
    return Client().get(f"{API_PREFIX}/openapi.json").json()


def operation(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    for template, methods in schema["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method in methods:
            return methods[method]
    raise AssertionError(f"{method.upper()} {path} is not in the served OpenAPI schema")


def check(client: Client, method: str, url: str, response: Any) -> None:
    """The response is JSON, its status is documented for the operation, and its body
    validates against the documented schema."""
    schema = _served()
    op = operation(schema, method, urlsplit(url).path)
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    documented = op["responses"].get(str(response.status_code))
    assert documented is not None, (method, url, response.status_code, "not in the schema")
    content = documented["content"]["application/json"]["schema"]
    OAS31Validator({**content, "components": schema.get("components", {})}).validate(body)
