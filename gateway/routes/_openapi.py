"""OpenAPI helpers for routes: error responses and examples, declared once."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar._openapi.schema_generation import SchemaCreator
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example, OpenAPIFormat, OpenAPIType, Reference, Schema
from litestar.params import Body
from litestar.typing import FieldDefinition

from contracts._base import Request
from contracts.v1 import Problem
from contracts.v1._types import MONEY_PATTERN
from gateway.problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, PROBLEMS

__all__ = ["ContractSchemaPlugin", "body", "example", "problems", "responses"]

#: Every ERP-backed operation can meet these.
ERP_FAILURES = ("erp-unavailable", "erp-circuit-open", "erp-busy", "erp-timeout", "too-many-requests")
#: Every /v1 operation needs a bearer token with its scope.
AUTH_FAILURES = ("unauthorized", "forbidden")
#: Every operation can meet these: another method on its path, an oversized header section.
EDGE_FAILURES = ("method-not-allowed", "headers-too-large")


def example(summary: str, value: Any) -> Example:
    """A response example, written as given: Litestar drops ``None`` from example values, but the
    gateway sends every field, ``null`` included, and the spec's examples must validate."""
    return Example(summary=summary, value=msgspec.Raw(msgspec.json.encode(value)))


def body(summary: str, value: Any) -> Any:
    """A request body parameter's OpenAPI description with one example."""
    return Body(examples=[Example(summary=summary, value=value)])


def responses(
    status: int, data: Any, description: str, examples: list[Example], *slugs: str
) -> dict[int, ResponseSpec]:
    """The success response with its examples, then one problem response per error status.

    An operation with a body names ``payload-too-large``; its body can also be of the wrong
    media type (``gateway.decoding``), so it gets ``unsupported-media-type`` too."""
    if "payload-too-large" in slugs:
        slugs = (*slugs, "unsupported-media-type")
    out = {
        status: ResponseSpec(data_container=data, description=description, examples=examples, generate_examples=False)
    }
    out.update(problems("validation-failed", *slugs, *AUTH_FAILURES, *ERP_FAILURES))
    return out


def problems(*slugs: str) -> dict[int, ResponseSpec]:
    """Problem responses for the given slugs and the edge's (``EDGE_FAILURES``), grouped by
    status, each with an example."""
    by_status: dict[int, list[str]] = {}
    for slug in (*slugs, *EDGE_FAILURES):
        by_status.setdefault(PROBLEMS[slug][0], []).append(slug)
    out: dict[int, ResponseSpec] = {}
    for status, group in sorted(by_status.items()):
        out[status] = ResponseSpec(
            data_container=Problem,
            generate_examples=False,
            description="; ".join(PROBLEMS[s][1] for s in group),
            media_type=PROBLEM_MEDIA_TYPE,
            examples=[
                Example(
                    summary=PROBLEMS[s][1],
                    value={
                        "type": PROBLEM_BASE + s,
                        "title": PROBLEMS[s][1],
                        "status": status,
                        "detail": "what went wrong, for a human",
                        "correlationId": "4bf92f3577b34da6a3ce929d0e0e4736",
                        "instance": "/v1/orders/SO-1002",
                    },
                )
                for s in group
            ],
        )
    return out


class ContractSchemaPlugin(StructSchemaPlugin):
    """Struct schemas that state everything msgspec enforces: the spec is the enforcement.

    Litestar's own Struct plugin reads constraints only from a field's outermost annotation: the
    pattern and length of list items (``skus``, ``warehouses``) and of the non-null member of an
    optional field are dropped, ``forbid_unknown_fields`` is not stated, and money (a ``Decimal``)
    is a plain string. This one lets Litestar build the schema, then adds what msgspec's own
    type information says (``msgspec.inspect``): ``additionalProperties: false`` for requests,
    item constraints, and ``MONEY_PATTERN`` for money. It only adds; nothing is changed.

    ``required`` means "always present": a request field is required when it has no default,
    but a Struct the gateway only answers with and encodes without ``omit_defaults``
    (``contracts._base.Response``, the health answers) writes every field, so all are listed.
    The problem ``type`` lists the catalog (``gateway.problems.PROBLEMS``).
    """

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType):
            if info.forbid_unknown_fields and schema.additional_properties is None:
                schema.additional_properties = False
            for field in info.fields:
                _tighten((schema.properties or {}).get(field.encode_name), field.type, None)
            config = info.cls.__struct_config__
            if not issubclass(info.cls, Request) and not config.forbid_unknown_fields and not config.omit_defaults:
                schema.required = sorted(field.encode_name for field in info.fields)
            if info.cls is Problem and isinstance(kind := (schema.properties or {}).get("type"), Schema):
                kind.format = OpenAPIFormat.URI
                kind.description = _PROBLEM_TYPES
        return schema


#: The catalog, for the problem ``type``: a client matches on these URIs (new ones may be added).
_PROBLEM_TYPES = (
    "Stable URI of the kind of error; match on it, never on `title` or `detail`. New kinds may be "
    "added. The kinds (status, title):\n\n"
    + "\n".join(f"- `{PROBLEM_BASE}{slug}` ({status}, {title})" for slug, (status, title) in PROBLEMS.items())
)


def _tighten(schema: Schema | Reference | None, t: msgspec.inspect.Type, stated: Schema | None) -> None:
    """Add to ``schema`` the constraints of ``t`` it does not state (nor ``stated``, around it)."""
    if not isinstance(schema, Schema):
        return  # a $ref: its component states its own
    while isinstance(t, msgspec.inspect.Metadata):  # description and examples: Litestar states them
        t = t.type
    if isinstance(t, msgspec.inspect.UnionType):
        members = [m for m in t.types if not isinstance(m, msgspec.inspect.NoneType)]
        if len(members) == 1:
            for sub in schema.one_of or ():
                if isinstance(sub, Schema) and sub.type != OpenAPIType.NULL:
                    _tighten(sub, members[0], schema)
        return

    def add(attr: str, value: Any) -> None:
        if value is not None and getattr(schema, attr) is None and getattr(stated, attr, None) is None:
            setattr(schema, attr, value)

    if isinstance(t, msgspec.inspect.ListType):
        add("min_items", t.min_length)
        add("max_items", t.max_length)
        _tighten(schema.items if not isinstance(schema.items, list) else None, t.item_type, None)
    elif isinstance(t, msgspec.inspect.StrType):
        add("pattern", t.pattern)
        add("min_length", t.min_length)
        add("max_length", t.max_length)
    elif isinstance(t, msgspec.inspect.DecimalType):
        schema.type = OpenAPIType.STRING
        add("pattern", MONEY_PATTERN)
