"""The breaking-change checker (gateway.openapi_diff), one rule at a time on tiny hand-made specs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from gateway.openapi_diff import Change, breaking, diff, report

Spec = dict[str, Any]


def _spec() -> Spec:
    """One read and one write, a shared component, a nullable field, an enum, a header."""
    return {
        "openapi": "3.1.0",
        "paths": {
            "/v1/items/{item_id}": {
                "get": {
                    "operationId": "getItem",
                    "security": [{"bearer": ["items:read"]}],
                    "parameters": [
                        {"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "fields", "in": "query", "required": False, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "ok",
                            "headers": {"X-Request-ID": {"required": True, "schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}},
                        },
                        "404": {
                            "description": "no",
                            "content": {"application/problem+json": {"schema": {"type": "object"}}},
                        },
                    },
                }
            },
            "/v1/items": {
                "post": {
                    "operationId": "createItem",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/ItemRequest"}]}}
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "made",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Item": {
                    "type": "object",
                    "required": ["id", "status", "price"],
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"type": "string", "enum": ["open", "closed"]},
                        "price": {"type": "string", "pattern": "^[0-9]+$"},
                        "note": {"oneOf": [{"type": "string"}, {"type": "null"}]},
                        "tags": {"type": "array", "items": {"$ref": "#/components/schemas/Tag"}},
                        "createdAt": {"type": "string", "format": "date-time"},
                    },
                },
                "Tag": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                "ItemRequest": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 64, "minLength": 1, "pattern": "^[a-z]+$"},
                        "kind": {"type": "string", "enum": ["a", "b"]},
                        "quantity": {"type": "integer", "minimum": 1, "maximum": 100},
                        "comment": {"oneOf": [{"type": "string"}, {"type": "null"}], "maxLength": 200},
                        "lines": {"type": "array", "maxItems": 10, "items": {"type": "string"}},
                    },
                },
            }
        },
    }


def _changes(edit: Callable[[Spec], object]) -> list[Change]:
    old = _spec()
    new = copy.deepcopy(old)
    edit(new)
    return diff(old, new)


def _get(spec: Spec) -> Spec:
    return spec["paths"]["/v1/items/{item_id}"]["get"]  # type: ignore[no-any-return]


def _post(spec: Spec) -> Spec:
    return spec["paths"]["/v1/items"]["post"]  # type: ignore[no-any-return]


def _schema(spec: Spec, name: str) -> Spec:
    return spec["components"]["schemas"][name]  # type: ignore[no-any-return]


def _only(changes: list[Change], *, is_breaking: bool, says: str) -> None:
    """Exactly the expected kind of change, and at least one naming ``says``."""
    assert changes, "no change found"
    assert all(c.breaking is is_breaking for c in changes), report(changes)
    assert any(says in str(c) for c in changes), report(changes)


def test_identical_specs_have_no_changes() -> None:
    assert diff(_spec(), _spec()) == []
    assert report([]).startswith("no changes")


BREAKING: dict[str, tuple[Callable[[Spec], object], str]] = {
    "path removed": (lambda s: s["paths"].pop("/v1/items"), "/v1/items: path removed"),
    "operation removed": (
        lambda s: s["paths"]["/v1/items"].update(put=s["paths"]["/v1/items"].pop("post")),
        "POST /v1/items: operation removed",
    ),
    "operationId changed": (lambda s: _get(s).update(operationId="fetchItem"), "operationId changed"),
    "response status removed": (lambda s: _get(s)["responses"].pop("404"), "response 404: removed"),
    "status code changed": (
        lambda s: _post(s)["responses"].update({"200": _post(s)["responses"].pop("201")}),
        "response 201: removed",
    ),
    "response field removed": (lambda s: _schema(s, "Item")["properties"].pop("note"), "`note`: field removed"),
    "nested response field removed": (
        lambda s: _schema(s, "Tag")["properties"].pop("name"),
        "`tags[].name`: field removed",
    ),
    "request field removed": (
        lambda s: _schema(s, "ItemRequest")["properties"].pop("kind"),
        "request body `kind`: field removed",
    ),
    "response field no longer required": (
        lambda s: _schema(s, "Item")["required"].remove("status"),
        "`status`: may now be absent",
    ),
    "response type changed": (
        lambda s: _schema(s, "Item")["properties"]["id"].update(type="integer"),
        "`id`: type changed string -> integer",
    ),
    "response field may now be null": (
        lambda s: _schema(s, "Item")["properties"].update(id={"oneOf": [{"type": "string"}, {"type": "null"}]}),
        "`id`: type changed: now may send null",
    ),
    "request field no longer nullable": (
        lambda s: _schema(s, "ItemRequest")["properties"]["comment"].update(oneOf=[{"type": "string"}]),
        "`comment`: type changed: no longer accepts null",
    ),
    "request type changed": (
        lambda s: _schema(s, "ItemRequest")["properties"]["quantity"].update(type="string"),
        "`quantity`: type changed integer -> string",
    ),
    "format changed": (
        lambda s: _schema(s, "Item")["properties"]["createdAt"].update(format="date"),
        "format changed 'date-time' -> 'date'",
    ),
    "typed format added": (
        lambda s: _schema(s, "Item")["properties"]["id"].update(format="uuid"),
        "format changed None -> 'uuid'",
    ),
    "request format added": (
        lambda s: _schema(s, "ItemRequest")["properties"]["name"].update(format="email"),
        "`name`: format changed None -> 'email'",
    ),
    "new required request field": (
        lambda s: (
            _schema(s, "ItemRequest")["properties"].update(color={"type": "string"}),
            _schema(s, "ItemRequest")["required"].append("color"),
        ),
        "`color`: required field added",
    ),
    "optional request field became required": (
        lambda s: _schema(s, "ItemRequest")["required"].append("kind"),
        "`kind`: now required",
    ),
    "new required parameter": (
        lambda s: _get(s)["parameters"].append(
            {"name": "tenant", "in": "query", "required": True, "schema": {"type": "string"}}
        ),
        "query parameter 'tenant': added, required",
    ),
    "optional parameter became required": (
        lambda s: _get(s)["parameters"][1].update(required=True),
        "query parameter 'fields': now required",
    ),
    "parameter removed": (lambda s: _get(s)["parameters"].pop(1), "query parameter 'fields': removed"),
    "path parameter renamed": (
        lambda s: (
            s["paths"].update({"/v1/items/{itemId}": s["paths"].pop("/v1/items/{item_id}")}),
            s["paths"]["/v1/items/{itemId}"]["get"]["parameters"][0].update(name="itemId"),
        ),
        "path parameter 'item_id': renamed to 'itemId'",
    ),
    "parameter pattern added": (
        lambda s: _get(s)["parameters"][0]["schema"].update(pattern="^[0-9]+$"),
        "pattern changed None -> '^[0-9]+$' (narrower)",
    ),
    "request enum narrowed": (
        lambda s: _schema(s, "ItemRequest")["properties"]["kind"].update(enum=["a"]),
        "enum narrowed: ['b'] no longer accepted",
    ),
    "request enum appeared": (
        lambda s: _schema(s, "ItemRequest")["properties"]["name"].update(enum=["x"]),
        "enum narrowed",
    ),
    "response enum widened": (
        lambda s: _schema(s, "Item")["properties"]["status"].update(enum=["open", "closed", "held"]),
        "enum widened: may now send ['held']",
    ),
    "response enum dropped": (
        lambda s: _schema(s, "Item")["properties"]["status"].pop("enum"),
        "enum widened: may now send any value",
    ),
    "request pattern changed": (
        lambda s: _schema(s, "ItemRequest")["properties"]["name"].update(pattern="^[a-z0-9]+$"),
        "pattern changed '^[a-z]+$' -> '^[a-z0-9]+$' (narrower)",
    ),
    "request maxLength smaller": (
        lambda s: _schema(s, "ItemRequest")["properties"]["name"].update(maxLength=32),
        "maxLength changed 64 -> 32 (narrower)",
    ),
    "request maxLength on the nullable wrapper smaller": (
        lambda s: _schema(s, "ItemRequest")["properties"]["comment"].update(maxLength=100),
        "`comment`: maxLength changed 200 -> 100",
    ),
    "request minLength larger": (
        lambda s: _schema(s, "ItemRequest")["properties"]["name"].update(minLength=2),
        "minLength changed 1 -> 2 (narrower)",
    ),
    "request maximum smaller": (
        lambda s: _schema(s, "ItemRequest")["properties"]["quantity"].update(maximum=50),
        "maximum changed 100 -> 50",
    ),
    "request minimum larger": (
        lambda s: _schema(s, "ItemRequest")["properties"]["quantity"].update(minimum=2),
        "minimum changed 1 -> 2",
    ),
    "request maxItems smaller": (
        lambda s: _schema(s, "ItemRequest")["properties"]["lines"].update(maxItems=5),
        "`lines`: maxItems changed 10 -> 5",
    ),
    "request item constraint added": (
        lambda s: _schema(s, "ItemRequest")["properties"]["lines"]["items"].update(maxLength=8),
        "`lines[]`: maxLength changed None -> 8",
    ),
    "request closed to unknown fields": (
        lambda s: _schema(s, "ItemRequest").update(additionalProperties=False),
        "additionalProperties changed None -> False",
    ),
    "request media type changed": (
        lambda s: _post(s)["requestBody"]["content"].update(
            {"application/x-www-form-urlencoded": _post(s)["requestBody"]["content"].pop("application/json")}
        ),
        "application/json: media type removed",
    ),
    "response media type changed": (
        lambda s: _get(s)["responses"]["404"]["content"].update(
            {"application/json": _get(s)["responses"]["404"]["content"].pop("application/problem+json")}
        ),
        "response 404 application/problem+json: media type removed",
    ),
    "response header removed": (lambda s: _get(s)["responses"]["200"].pop("headers"), "header X-Request-ID: removed"),
    "response header no longer always sent": (
        lambda s: _get(s)["responses"]["200"]["headers"]["X-Request-ID"].update(required=False),
        "header X-Request-ID: no longer always sent",
    ),
    "security added": (
        lambda s: _post(s).update(security=[{"bearer": ["items:write"]}]),
        "security requirement changed none -> bearer['items:write']",
    ),
    "security scope changed": (
        lambda s: _get(s).update(security=[{"bearer": ["items:admin"]}]),
        "security requirement changed",
    ),
}


@pytest.mark.parametrize("rule", BREAKING)
def test_breaking_change_is_named(rule: str) -> None:
    edit, says = BREAKING[rule]
    changes = _changes(edit)
    assert breaking(changes), f"{rule}: not flagged\n{report(changes)}"
    assert any(says in str(c) for c in breaking(changes)), f"{rule}: expected {says!r}\n{report(changes)}"


NOT_BREAKING: dict[str, tuple[Callable[[Spec], object], str]] = {
    "path added": (lambda s: s["paths"].update({"/v1/other": {"get": {"responses": {}}}}), "path added"),
    "operation added": (
        lambda s: s["paths"]["/v1/items"].update(get={"operationId": "listItems", "responses": {}}),
        "GET /v1/items: operation added",
    ),
    "response status added": (
        lambda s: _get(s)["responses"].update({"410": {"description": "gone"}}),
        "response 410: added",
    ),
    "response header added": (
        lambda s: _get(s)["responses"]["200"]["headers"].update({"RateLimit": {"schema": {"type": "string"}}}),
        "header RateLimit: added",
    ),
    "response field added": (
        lambda s: _schema(s, "Item")["properties"].update(color={"type": "string"}),
        "`color`: field added",
    ),
    "response field now always present": (
        lambda s: _schema(s, "Item")["required"].append("note"),
        "`note`: now always present",
    ),
    "response field no longer null": (
        lambda s: _schema(s, "Item")["properties"].update(note={"type": "string"}),
        "`note`: type changed: no longer sends null",
    ),
    "optional request field added": (
        lambda s: _schema(s, "ItemRequest")["properties"].update(color={"type": "string"}),
        "`color`: optional field added",
    ),
    "optional parameter added": (
        lambda s: _get(s)["parameters"].append({"name": "lang", "in": "query", "schema": {"type": "string"}}),
        "added, optional",
    ),
    "request field now optional": (
        lambda s: _schema(s, "ItemRequest")["required"].remove("name"),
        "`name`: now optional",
    ),
    "request field now nullable": (
        lambda s: _schema(s, "ItemRequest")["properties"].update(
            kind={"oneOf": [{"type": "string", "enum": ["a", "b"]}, {"type": "null"}]}
        ),
        "now accepts null",
    ),
    "request enum widened": (
        lambda s: _schema(s, "ItemRequest")["properties"]["kind"].update(enum=["a", "b", "c"]),
        "enum changed",
    ),
    "response enum narrowed": (
        lambda s: _schema(s, "Item")["properties"]["status"].update(enum=["open"]),
        "enum changed",
    ),
    "request maxLength larger": (
        lambda s: _schema(s, "ItemRequest")["properties"]["name"].update(maxLength=128),
        "maxLength changed 64 -> 128",
    ),
    "request pattern removed": (
        lambda s: _schema(s, "ItemRequest")["properties"]["name"].pop("pattern"),
        "pattern changed",
    ),
    "request integer widened to number": (
        lambda s: _schema(s, "ItemRequest")["properties"]["quantity"].update(type="number"),
        "type changed integer -> number",
    ),
    "response pattern changed": (
        lambda s: _schema(s, "Item")["properties"]["price"].update(pattern="^[0-9.]+$"),
        "pattern changed",
    ),
    "response plain format added": (
        lambda s: _schema(s, "Item")["properties"]["id"].update(format="uri"),
        "`id`: format changed None -> 'uri'",
    ),
    "media type added": (
        lambda s: _get(s)["responses"]["200"]["content"].update({"text/csv": {"schema": {"type": "string"}}}),
        "text/csv: media type added",
    ),
    "operation deprecated": (lambda s: _get(s).update(deprecated=True), "operation deprecated"),
    "path parameter style of naming kept, description changed": (
        lambda s: _get(s)["parameters"][0].update(description="the item"),
        "",
    ),
}


@pytest.mark.parametrize("rule", NOT_BREAKING)
def test_compatible_change_is_not_breaking(rule: str) -> None:
    edit, says = NOT_BREAKING[rule]
    changes = _changes(edit)
    if not says:
        assert changes == [], report(changes)
        return
    _only(changes, is_breaking=False, says=says)


def test_a_shared_component_is_reported_per_operation() -> None:
    changes = _changes(lambda s: _schema(s, "Item")["properties"].pop("id"))
    assert {c.where for c in changes} == {
        "GET /v1/items/{item_id}: response 200 `id`",
        "POST /v1/items: response 201 `id`",
    }


def test_recursive_schemas_terminate() -> None:
    def recursive(s: Spec) -> None:
        _schema(s, "Tag")["properties"]["children"] = {"type": "array", "items": {"$ref": "#/components/schemas/Tag"}}

    old = _spec()
    recursive(old)
    new = copy.deepcopy(old)
    _schema(new, "Tag")["properties"]["name"]["type"] = "integer"
    assert [str(c) for c in breaking(diff(old, new))] == [
        "BREAKING  GET /v1/items/{item_id}: response 200 `tags[].name`: type changed string -> integer",
        "BREAKING  POST /v1/items: response 201 `tags[].name`: type changed string -> integer",
    ]


def test_report_puts_breaking_first_and_counts() -> None:
    changes = _changes(lambda s: (_schema(s, "Item")["properties"].pop("note"), _get(s).update(deprecated=True)))
    lines = report(changes).splitlines()
    assert lines[0].startswith("BREAKING")
    assert lines[-1] == "2 breaking, 1 not breaking"  # Item: in both operations


def test_a_reference_to_nothing_is_reported_not_a_crash() -> None:
    changes = _changes(lambda s: s["components"]["schemas"].pop("Item"))
    assert [c.where for c in breaking(changes)] == ["spec"]
    assert "#/components/schemas/Item" in changes[0].what


def test_a_map_values_type_change_is_breaking() -> None:
    old = _spec()
    _schema(old, "Item")["properties"]["by_tier"] = {"type": "object", "additionalProperties": {"type": "integer"}}
    new = copy.deepcopy(old)
    _schema(new, "Item")["properties"]["by_tier"]["additionalProperties"] = {"type": "string"}
    assert any("by_tier.*" in c.where and "type changed" in c.what for c in breaking(diff(old, new)))


def test_a_changed_security_scheme_is_breaking_a_new_one_is_not() -> None:
    old = _spec()
    old.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "https://a/token", "scopes": {}}}}
    }
    changed = copy.deepcopy(old)
    changed["components"]["securitySchemes"]["bearer"] = {"type": "http", "scheme": "basic"}
    assert [c.where for c in breaking(diff(old, changed))] == ["security scheme bearer"]
    added = copy.deepcopy(old)
    added["components"]["securitySchemes"]["other"] = {"type": "http", "scheme": "bearer"}
    assert breaking(diff(old, added)) == []
    documented = copy.deepcopy(old)
    documented["components"]["securitySchemes"]["bearer"]["description"] = "how to get a token"
    assert diff(old, documented) == []
