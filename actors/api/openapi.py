"""The OpenAPI 3.1 document, built from the route table and the structs the handlers use.

Schemas come from :func:`msgspec.json.schema_components` (JSON Schema 2020-12, which
OpenAPI 3.1 uses as it is) over each route's reply and body types, so the document lists
exactly the routes the app serves with exactly the shapes it sends and accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from actors.api.base import Route
from protocols.api import ErrorBody

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{name}"

_ERRORS = {
    "400": "Bad input (bad JSON, unknown fields, bad ids); nothing was changed",
    "401": "No API token given",
    "403": "Wrong API token, or no token configured for this endpoint",
    "404": "Not found",
    "413": "Body too large",
    "429": "Busy or flood-waited: retry after Retry-After seconds",
    "503": "The actor that owns the data is unavailable",
    "504": "Timed out",
}


def _content(kind: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {kind: {"schema": schema}}


def _operation(route: Route, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    error = {"$ref": _REF.format(name=ErrorBody.__name__)}
    ok: dict[str, Any] = {"description": "OK"}
    if route.reply is not None:
        ok["content"] = _content(route.content, refs[route.reply])
    elif route.content != "application/json":
        ok["content"] = _content(route.content, {"type": "string"})
    operation: dict[str, Any] = {
        "operationId": f"{route.method.lower()}_{route.handler.__name__}",
        "summary": route.summary,
        "responses": {
            "200": ok,
            **{
                code: {"description": text, "content": _content("application/json", error)}
                for code, text in _ERRORS.items()
            },
        },
    }
    if route.params:
        operation["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "description": p.description,
                "schema": {"type": p.type},
            }
            for p in route.params
        ]
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": _content("application/json", refs[route.body]),
        }
    if route.guarded:
        operation["security"] = [{"bearer": []}]
    return operation


def openapi_document(routes: Iterable[Route], title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` as plain builtins."""
    routes = list(routes)
    types = list(dict.fromkeys(t for r in routes for t in (ErrorBody, r.reply, r.body) if t))
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    refs = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
