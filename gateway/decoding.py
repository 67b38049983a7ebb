"""Request decoding, once for every route: what a caller sends is read exactly as the contract says.

Litestar decodes a JSON body into Python builtins and then converts them to the handler's Struct
with ``strict=False`` (``"2"`` becomes ``2``, ``2.0`` becomes ``2``), whatever the body's
``Content-Type``, and a body nested thousands of levels deep blows the decoder's recursion
(a 500). Here instead:

- ``check_request_shape`` (the app's ``before_request``): a route with a body takes only
  ``application/json`` or ``application/*+json`` (415 otherwise, a missing ``Content-Type``
  included); a scalar query or header parameter sent more than once is a 400, not "the last
  one wins".
- ``StrictRequest.json`` (the app's ``request_class``): refuses JSON nested deeper than
  ``MAX_JSON_DEPTH`` with a cheap scan of the raw bytes, then decodes the bytes straight into
  the handler's Struct with msgspec ``strict=True``. Money (every ``Decimal`` of a request) must
  be a string matching ``MONEY_PATTERN``: msgspec would read ``"NaN"``, ``"sNaN"``, ``1e999``
  or a JSON number as a ``Decimal``, so the body is first decoded into a twin of the Struct in
  which money is that constrained string (error paths and messages are msgspec's own).

GET routes without parameters pay one dictionary lookup; the cached hot path
(``gateway.hot_path``) never reaches this.
"""

from __future__ import annotations

import re
import types
from decimal import Decimal
from typing import Annotated, Any, NamedTuple, Union, get_args, get_origin

import msgspec
from litestar import Litestar, Request
from litestar.exceptions import HTTPException, ValidationException
from litestar.routes import HTTPRoute

from contracts.v1._types import MONEY_PATTERN

__all__ = ["MAX_JSON_DEPTH", "StrictRequest", "check_request_shape", "json_too_deep", "wire_type"]

#: Deepest nesting of arrays and objects a request body may have (the contract needs 3).
MAX_JSON_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_MEDIA_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``body`` nests arrays and objects deeper than ``limit`` (or its brackets do not
    pair up: not JSON anyway). Brackets inside strings do not count. Cheap: bodies with at most
    ``limit`` opening brackets are let through by two ``count`` calls; the others are reduced
    by removing innermost pairs, one level per pass, at most ``limit`` passes in C."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    skeleton = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not skeleton:
            return False
        # Marking first makes a pass remove exactly one level: "{[]}" keeps its "{}" for the next.
        reduced = skeleton.replace(b"[]", b"\0").replace(b"{}", b"\0").replace(b"\0", b"")
        if len(reduced) == len(skeleton):
            return True  # unpaired brackets
        skeleton = reduced
    return bool(skeleton)


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or ``application/*+json``; parameters allowed, but a ``charset``
    other than UTF-8 is not (JSON is UTF-8, RFC 8259: the body would be misread)."""
    media_type, _, parameters = content_type.partition(";")
    if not _MEDIA_TYPE.match(media_type.strip().lower()):
        return False
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


#: How money is read from the wire: a string, never a JSON number, finite, bounded.
_MONEY_ON_THE_WIRE = Annotated[str, msgspec.Meta(pattern=MONEY_PATTERN)]
_twins: dict[Any, Any] = {}


def wire_type(tp: Any) -> Any:
    """``tp`` with every ``Decimal`` (money) replaced by the string the contract says it is on
    the wire; Structs are rebuilt with the same wire names, defaults and unknown-field rule.
    Returns ``tp`` itself when it holds no money."""
    if tp is Decimal:
        return _MONEY_ON_THE_WIRE
    origin = get_origin(tp)
    if origin is Annotated:
        inner = wire_type(tp.__origin__)
        return tp if inner is tp.__origin__ else Annotated[(inner, *tp.__metadata__)]
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        twins = tuple(wire_type(a) for a in args)
        return tp if twins == args else Union[twins]  # noqa: UP007 (built from a tuple)
    if origin is list:
        (item,) = get_args(tp)
        twin = wire_type(item)
        return tp if twin is item else list[twin]  # type: ignore[valid-type]
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if tp not in _twins:
            _twins[tp] = tp  # a recursive Struct refers to itself while it is being rebuilt
            _twins[tp] = _struct_twin(tp)
        return _twins[tp]
    return tp


def _struct_twin(cls: type[msgspec.Struct]) -> Any:
    fields = msgspec.structs.fields(cls)
    twins = [wire_type(f.type) for f in fields]
    if all(t is f.type for t, f in zip(twins, fields, strict=True)):
        return cls
    definitions: list[tuple[str, Any, Any]] = []
    for f, t in zip(fields, twins, strict=True):
        if f.default is not msgspec.NODEFAULT:
            definitions.append((f.name, t, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            definitions.append((f.name, t, msgspec.field(default_factory=f.default_factory)))
        else:
            definitions.append((f.name, t, msgspec.NODEFAULT))
    return msgspec.defstruct(
        cls.__name__,
        definitions,
        kw_only=True,
        forbid_unknown_fields=cls.__struct_config__.forbid_unknown_fields,
        rename={f.name: f.encode_name for f in fields},
    )


class _BodyDecoder:
    """Decodes one request type from bytes: depth first, then money, then the Struct itself."""

    def __init__(self, tp: Any) -> None:
        self.decoder = msgspec.json.Decoder(tp, strict=True)
        twin = wire_type(tp)
        self.wire = msgspec.json.Decoder(twin, strict=True) if twin is not tp else None

    def decode(self, body: bytes) -> Any:
        if json_too_deep(body):
            raise ValidationException(
                detail=f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels (or its brackets do not pair up)"
            )
        try:
            if self.wire is not None:
                self.wire.decode(body)
            return self.decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise ValidationException(detail=str(exc), extra=[{"message": str(exc), "key": "body"}]) from exc
        except msgspec.DecodeError as exc:
            raise ValidationException(detail=f"the body is not valid JSON: {exc}") from exc


class _Shape(NamedTuple):
    """What one route handler takes: a body decoder, and the parameters that must come once."""

    body: _BodyDecoder | None
    single_query: tuple[str, ...]
    single_headers: tuple[str, ...]


_NOTHING = _Shape(None, (), ())
_shapes: dict[int, tuple[object, _Shape]] = {}


def register_request_shapes(app: Litestar) -> None:
    """Read each route handler's body type and parameters once, after the app is built."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler, kwargs_model in route.route_handler_map.values():
            data = handler.parsed_fn_signature.parameters.get("data")
            shape = _Shape(
                _BodyDecoder(data.annotation) if data is not None else None,
                tuple(p.field_alias for p in kwargs_model.expected_query_params if not p.is_sequence),
                tuple(p.field_alias.lower() for p in kwargs_model.expected_header_params),
            )
            if shape != _NOTHING:
                _shapes[id(handler)] = (handler, shape)


def _shape_of(request: Request[Any, Any, Any]) -> _Shape:
    handler = request.scope["route_handler"]
    found = _shapes.get(id(handler))
    return found[1] if found is not None and found[0] is handler else _NOTHING


async def check_request_shape(request: Request[Any, Any, Any]) -> None:
    """``before_request``: refuse a body that is not JSON (415) and repeated single parameters (400)."""
    shape = _shape_of(request)
    if shape is _NOTHING:
        return
    if shape.body is not None:
        content_types = request.headers.getall("content-type", [])
        content_type = content_types[0] if len(content_types) == 1 else ", ".join(content_types)
        if not is_json_media_type(content_type):  # none, several, or not JSON
            raise HTTPException(
                status_code=415,
                detail=f"the body must be application/json, not {content_type or 'without a Content-Type'}",
            )
    if shape.single_query and request.scope["query_string"]:
        query = request.query_params
        for name in shape.single_query:
            if len(query.getall(name, ())) > 1:
                raise ValidationException(
                    detail=f"{name}: query parameter given more than once",
                    extra=[{"message": "given more than once", "key": name}],
                )
    for name in shape.single_headers:
        if len(request.headers.getall(name, [])) > 1:
            raise ValidationException(
                detail=f"{name}: header given more than once",
                extra=[{"message": "given more than once", "key": name}],
            )


class StrictRequest(Request[Any, Any, Any]):
    """The app's request class: a body is decoded straight from its bytes, strictly."""

    async def json(self) -> Any:
        shape = _shape_of(self)
        if shape.body is None:
            return await super().json()
        return shape.body.decode(await self.body())
