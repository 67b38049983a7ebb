"""The breaking-change gate: what changed between a published OpenAPI spec and the current one.

A small checker of our own, on purpose: ``@pb33f/openapi-changes`` installs from npm only as a
wrapper that downloads its Go binary from github.com (unreachable from CI here), ``oasdiff`` on
npm is a placeholder, and ``@useoptic/optic`` 1.0.9 crashes on start (its Spectral/Ajv
dependency). The rules are the ones below, each with a unit test (tests/unit/test_openapi_diff.py).

Both specs are walked side by side, ``$ref`` resolved into ``components/schemas`` and
single-member ``allOf`` wrappers merged. A schema is compared by direction: in a *request*
(parameters, bodies) the gateway must still accept everything it accepted; in a *response* a
client must still understand everything it is sent. Breaking:

- a removed path (templates match whatever their parameters are called), operation, response
  status, media type (request or response), response header, parameter or field;
- a changed ``operationId`` (generated clients name their functions by it), a renamed path
  parameter (typed clients name the argument), a changed parameter ``style``/``explode``;
- a type change (a request that no longer takes a type, a response that may send a new one, null
  included); a ``format`` change in a request, or to or from one generators map to a type of its
  own (``date-time``, ``date``, ``uuid``, ``binary``...) anywhere;
- in a request: a new required field, parameter or body, an optional one that became required,
  ``additionalProperties: false`` where unknown fields were allowed, an enum that lost a value
  (or appeared), and any new or changed ``pattern``/``multipleOf``, a smaller or new
  ``maxLength``/``maxItems``/``maximum``/``exclusiveMaximum``/``maxProperties``, a larger or new
  ``minLength``/``minItems``/``minimum``/``exclusiveMinimum``/``minProperties``, ``uniqueItems``;
- in a response: a field that may now be absent (left ``required``), an enum that gained a value
  (or disappeared), a response header that is no longer always sent;
- a security requirement on an operation that had none, or a changed one.

Everything else is reported as not breaking: new paths, operations, responses, media types,
optional request fields and parameters, response fields, wider request constraints, a field now
always sent, a string format such as ``uri`` stated on a response, an operation newly ``deprecated``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

__all__ = ["Change", "breaking", "diff", "report"]

Direction = Literal["request", "response"]
Json = Mapping[str, Any]

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_TEMPLATE = re.compile(r"\{[^}]*\}")
#: Limits whose decrease (or appearance) narrows what a request may be.
_UPPER = ("maxLength", "maxItems", "maximum", "exclusiveMaximum", "maxProperties")
#: Limits whose increase (or appearance) narrows what a request may be.
_LOWER = ("minLength", "minItems", "minimum", "exclusiveMinimum", "minProperties")
#: Formats generators map to a type of their own (openapi-python-client, openapi-typescript and
#: most others: datetime, date, UUID, bytes/Blob); any other (``uri``, ``email``) stays a string.
_TYPED_FORMATS = frozenset({"date-time", "date", "time", "duration", "uuid", "binary", "byte", "decimal"})
#: Any new or changed value narrows a request (kept simple: a wider regex is not proven wider).
_EXACT = ("pattern", "multipleOf")


class Change(msgspec.Struct, frozen=True):
    breaking: bool
    where: str  # "GET /v1/orders/{}: response 200 body: lines[].sku"
    what: str  # "removed"

    def __str__(self) -> str:
        return f"{'BREAKING' if self.breaking else 'ok      '}  {self.where}: {self.what}"


def breaking(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.breaking]


def report(changes: list[Change]) -> str:
    """For a human: one line per change, breaking first, then a count."""
    ordered = sorted(changes, key=lambda c: not c.breaking)
    lines = [str(c) for c in ordered] or ["no changes"]
    lines.append(f"{len(breaking(changes))} breaking, {len(changes) - len(breaking(changes))} not breaking")
    return "\n".join(lines)


def diff(old: Json, new: Json) -> list[Change]:
    """Every change from ``old`` (published) to ``new`` (current), each marked breaking or not.

    A spec that refers to something it does not hold is itself reported (as breaking)."""
    out: list[Change] = []
    walk = _Walk(old, new, out)
    try:
        walk.paths()
        walk.security_schemes()
    except ValueError as exc:
        out.append(Change(True, "spec", str(exc)))
    seen: set[Change] = set()
    return [c for c in out if not (c in seen or seen.add(c))]  # type: ignore[func-returns-value]


class _Walk:
    def __init__(self, old: Json, new: Json, out: list[Change]) -> None:
        self.old, self.new, self.out = old, new, out

    def note(self, breaking: bool, where: str, what: str) -> None:
        self.out.append(Change(breaking, where, what))

    # -- security schemes ---------------------------------------------------------------------

    def security_schemes(self) -> None:
        """A scheme removed or changed in any way breaks a client's generated auth set-up; a new one does not."""
        old = self.old.get("components", {}).get("securitySchemes", {})
        new = self.new.get("components", {}).get("securitySchemes", {})
        for name in sorted(old.keys() - new.keys()):
            self.note(True, f"security scheme {name}", "removed")
        for name in sorted(new.keys() - old.keys()):
            self.note(False, f"security scheme {name}", "added")
        for name in sorted(old.keys() & new.keys()):
            before, after = _scopes(old[name]), _scopes(new[name])
            for flow in sorted(before.keys() & after.keys()):
                for scope in sorted(after[flow] - before[flow]):  # a token may ask for more: nothing breaks
                    self.note(False, f"security scheme {name}", f"{flow} scope {scope!r} added")
            if _without_docs(_no_scopes(old[name])) != _without_docs(_no_scopes(new[name])) or any(
                before[flow] - after.get(flow, set()) for flow in before
            ):
                self.note(True, f"security scheme {name}", "changed (type, flow, URL or scopes)")

    # -- paths and operations ---------------------------------------------------------------

    def paths(self) -> None:
        old = {_TEMPLATE.sub("{}", p): p for p in self.old.get("paths", {})}
        new = {_TEMPLATE.sub("{}", p): p for p in self.new.get("paths", {})}
        for key, path in old.items():
            if key not in new:
                self.note(True, path, "path removed")
        for key, path in new.items():
            if key not in old:
                self.note(False, path, "path added")
        for key in [k for k in old if k in new]:  # in the published order: the report is stable
            o, n = self.old["paths"][old[key]], self.new["paths"][new[key]]
            for method in _METHODS:
                where = f"{method.upper()} {new[key]}"
                if method in o and method not in n:
                    self.note(True, where, "operation removed")
                elif method in n and method not in o:
                    self.note(False, where, "operation added")
                elif method in o:
                    self.operation(where, (old[key], new[key]), o, n, o[method], n[method])

    def operation(
        self, where: str, paths: tuple[str, str], old_item: Json, new_item: Json, old: Json, new: Json
    ) -> None:
        path_old, path_new = paths
        if old.get("operationId") != new.get("operationId"):
            self.note(True, where, f"operationId changed {old.get('operationId')!r} -> {new.get('operationId')!r}")
        if new.get("deprecated") and not old.get("deprecated"):
            self.note(False, where, "operation deprecated")
        old_sec = _security(old.get("security", self.old.get("security", [])))
        new_sec = _security(new.get("security", self.new.get("security", [])))
        if old_sec != new_sec:
            # a client keeps working if the way it authenticates is still one of the ways
            lost = bool(old_sec - new_sec) or (not old_sec and bool(new_sec))
            self.note(lost, where, f"security requirement changed {_show(old_sec)} -> {_show(new_sec)}")
        self.parameters(where, _params(self.old, path_old, old_item, old), _params(self.new, path_new, new_item, new))
        self.request_body(
            where, self.deref(self.old, old.get("requestBody")), self.deref(self.new, new.get("requestBody"))
        )
        self.responses(where, old.get("responses", {}), new.get("responses", {}))

    def parameters(self, where: str, old: dict[tuple[str, str], Json], new: dict[tuple[str, str], Json]) -> None:
        for key, o in old.items():
            here = f"{where}: {o['in']} parameter {o['name']!r}"
            n = new.get(key)
            if n is None:
                self.note(True, here, "removed")
                continue
            if o["name"] != n["name"]:
                self.note(True, here, f"renamed to {n['name']!r}")
            if n.get("required") and not o.get("required"):
                self.note(True, here, "now required")
            elif o.get("required") and not n.get("required"):
                self.note(False, here, "now optional")
            for attr in ("style", "explode"):
                if o.get(attr) != n.get(attr):
                    self.note(True, here, f"{attr} changed {o.get(attr)!r} -> {n.get(attr)!r}")
            self.schema(here, "", o.get("schema", {}), n.get("schema", {}), "request", frozenset())
        for key, n in new.items():
            if key not in old:
                required = bool(n.get("required"))
                here = f"{where}: {n['in']} parameter {n['name']!r}"
                self.note(required, here, "added, required" if required else "added, optional")

    def request_body(self, where: str, old: Json | None, new: Json | None) -> None:
        here = f"{where}: request body"
        if old is None and new is None:
            return
        if new is None:
            self.note(True, here, "removed")
            return
        if old is None:
            self.note(bool(new.get("required")), here, "added, required" if new.get("required") else "added, optional")
            return
        if new.get("required") and not old.get("required"):
            self.note(True, here, "now required")
        self.content(here, old.get("content", {}), new.get("content", {}), "request")

    def responses(self, where: str, old: Json, new: Json) -> None:
        for status in [s for s in old if s not in new]:
            self.note(True, f"{where}: response {status}", "removed")
        for status in [s for s in new if s not in old]:
            self.note(False, f"{where}: response {status}", "added")
        for status in [s for s in old if s in new]:
            here = f"{where}: response {status}"
            o, n = self.deref(self.old, old[status]) or {}, self.deref(self.new, new[status]) or {}
            self.content(here, o.get("content", {}), n.get("content", {}), "response")
            self.headers(here, o.get("headers", {}), n.get("headers", {}))

    def headers(self, where: str, old: Json, new: Json) -> None:
        old_by = {k.lower(): k for k in old}
        new_by = {k.lower(): k for k in new}
        for key, name in old_by.items():
            here = f"{where}: header {name}"
            if key not in new_by:
                self.note(True, here, "removed")
                continue
            o, n = self.deref(self.old, old[name]) or {}, self.deref(self.new, new[new_by[key]]) or {}
            if o.get("required") and not n.get("required"):
                self.note(True, here, "no longer always sent")
            elif n.get("required") and not o.get("required"):
                self.note(False, here, "now always sent")
            self.schema(here, "", o.get("schema", {}), n.get("schema", {}), "response", frozenset())
        for key, name in new_by.items():
            if key not in old_by:
                self.note(False, f"{where}: header {name}", "added")

    def content(self, where: str, old: Json, new: Json, direction: Direction) -> None:
        for media in [m for m in old if m not in new]:
            self.note(True, f"{where} {media}", "media type removed")
        for media in [m for m in new if m not in old]:
            self.note(False, f"{where} {media}", "media type added")
        for media in [m for m in old if m in new]:
            self.schema(where, "", old[media].get("schema", {}), new[media].get("schema", {}), direction, frozenset())

    @staticmethod
    def deref(spec: Json, node: Json | None) -> Json | None:
        """A Reference Object followed to what it names (responses, bodies, headers: any component)."""
        for _ in range(32):
            if node is None or "$ref" not in node:
                break
            node = _pointer(spec, node["$ref"])
        return node

    # -- schemas ----------------------------------------------------------------------------

    def schema(self, where: str, field: str, old: Json, new: Json, direction: Direction, stack: frozenset[Any]) -> None:
        """Compare two schemas found at ``where`` (an operation's body, parameter, header), at
        ``field`` inside it (``lines[].sku``; empty: the whole value)."""
        key = (old.get("$ref"), new.get("$ref"), direction)
        if key[0] is not None and key[1] is not None:
            if key in stack:
                return  # a recursive schema: already being compared, further up
            stack = stack | {key}
        o, n = _flatten(self.old, old), _flatten(self.new, new)
        ov, nv = _variants(self.old, o), _variants(self.new, n)
        if len(ov) == 1 and len(nv) == 1:
            self.types(where, field, o, n, direction, stack)
            return
        request = direction == "request"
        here = _at(where, field)
        for name in sorted(ov.keys() - nv.keys()):
            self.note(request, here, f"type changed: no longer {'accepts' if request else 'sends'} {name}")
        for name in sorted(nv.keys() - ov.keys()):
            self.note(not request, here, f"type changed: now {'accepts' if request else 'may send'} {name}")
        for name in sorted(ov.keys() & nv.keys()):
            self.schema(where, field, ov[name], nv[name], direction, stack)

    def types(self, where: str, field: str, old: Json, new: Json, direction: Direction, stack: frozenset[Any]) -> None:
        here = _at(where, field)
        ot, nt = _type(old), _type(new)
        if ot != nt:
            # request: the new type must take everything the old one did; response: the reverse
            wider, narrower = (nt, ot) if direction == "request" else (ot, nt)
            ok = wider is None or (narrower, wider) == ("integer", "number")
            self.note(not ok, here, f"type changed {ot or 'any'} -> {nt or 'any'}")
            if not ok:
                return  # what follows compares like with like
        of, nf = old.get("format"), new.get("format")
        if of != nf:
            # a request may refuse what it took; a typed format changes the generated type
            typed = direction == "request" or of in _TYPED_FORMATS or nf in _TYPED_FORMATS
            self.note(typed, here, f"format changed {of!r} -> {nf!r}")
        self.enum(here, old, new, direction)
        self.limits(here, old, new, direction)
        if "properties" in old or "properties" in new or isinstance(old.get("additionalProperties"), dict):
            self.object(where, field, old, new, direction, stack)
        if "items" in old or "items" in new:
            items_old, items_new = old.get("items", {}), new.get("items", {})
            self.schema(where, f"{field}[]", items_old, items_new, direction, stack)

    def enum(self, where: str, old: Json, new: Json, direction: Direction) -> None:
        oe, ne = _enum(old), _enum(new)
        if oe == ne:
            return
        if direction == "request":  # every value sent so far must still be taken
            lost = None if oe is None else [v for v in oe if ne is not None and v not in ne]
            if ne is not None and (oe is None or lost):
                self.note(
                    True, where, f"enum narrowed: {lost or ne} {'no longer accepted' if lost else 'now required'}"
                )
                return
        else:  # every value sent must be one a client knows
            gained = None if ne is None else [v for v in ne if oe is not None and v not in oe]
            if oe is not None and (ne is None or gained):
                self.note(True, where, f"enum widened: may now send {gained or 'any value'}")
                return
        self.note(False, where, f"enum changed {oe} -> {ne}")

    def limits(self, where: str, old: Json, new: Json, direction: Direction) -> None:
        for name in (*_UPPER, *_LOWER, *_EXACT, "uniqueItems", "additionalProperties"):
            ov, nv = old.get(name), new.get(name)
            if ov == nv or (name == "additionalProperties" and isinstance(ov, dict | bool) and isinstance(nv, dict)):
                continue
            narrowed = (
                direction == "request"
                and nv is not None
                and (
                    (name in _UPPER and (ov is None or nv < ov))
                    or (name in _LOWER and (ov is None or nv > ov))
                    or name in _EXACT
                    or (name == "uniqueItems" and nv is True)
                    or (name == "additionalProperties" and nv is False)
                )
            )
            self.note(narrowed, where, f"{name} changed {ov!r} -> {nv!r}" + (" (narrower)" if narrowed else ""))

    def object(self, where: str, field: str, old: Json, new: Json, direction: Direction, stack: frozenset[Any]) -> None:
        op, np_ = old.get("properties", {}), new.get("properties", {})
        oreq, nreq = set(old.get("required", ())), set(new.get("required", ()))

        def sub(name: str) -> str:
            return f"{field}.{name}" if field else name

        for name in sorted(op.keys() - np_.keys()):
            self.note(True, _at(where, sub(name)), "field removed")
        for name in sorted(np_.keys() - op.keys()):
            if direction == "request" and name in nreq:
                self.note(True, _at(where, sub(name)), "required field added")
            else:
                added = "optional field added" if direction == "request" else "field added"
                self.note(False, _at(where, sub(name)), added)
        for name in sorted(op.keys() & np_.keys()):
            here = _at(where, sub(name))
            if direction == "request" and name in nreq and name not in oreq:
                self.note(True, here, "now required")
            elif direction == "request" and name in oreq and name not in nreq:
                self.note(False, here, "now optional")
            elif direction == "response" and name in oreq and name not in nreq:
                self.note(True, here, "may now be absent (no longer required)")
            elif direction == "response" and name in nreq and name not in oreq:
                self.note(False, here, "now always present (required)")
            self.schema(where, sub(name), op[name], np_[name], direction, stack)
        old_values, new_values = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(old_values, dict) and isinstance(new_values, dict):  # a map: its values' schema
            self.schema(where, sub("*"), old_values, new_values, direction, stack)


def _at(where: str, field: str) -> str:
    return f"{where} `{field}`" if field else where


def _pointer(spec: Json, ref: str) -> Json:
    if not ref.startswith("#/"):
        raise ValueError(f"only local references are followed: {ref}")
    node: Any = spec
    for part in ref[2:].split("/"):
        try:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"the spec refers to {ref}, which it does not hold") from None
    return node  # type: ignore[no-any-return]


def _flatten(spec: Json, schema: Json) -> dict[str, Any]:
    """The schema with its ``$ref`` followed and its ``allOf`` members merged in."""
    out: dict[str, Any] = {}
    for _ in range(32):
        if "$ref" not in schema:
            break
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        out.update(rest)
        schema = _pointer(spec, schema["$ref"])
    merged: dict[str, Any] = {}
    for member in schema.get("allOf", ()):
        flat = _flatten(spec, member)
        props = {**merged.get("properties", {}), **flat.get("properties", {})}
        required = [*merged.get("required", ()), *flat.get("required", ())]
        merged.update(flat)
        if props:
            merged["properties"] = props
        if required:
            merged["required"] = sorted(set(required))
    merged.update({k: v for k, v in schema.items() if k != "allOf"})
    merged.update(out)
    return merged


def _variants(spec: Json, schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the schema may be, by type: ``oneOf``/``anyOf`` members and ``type`` lists split, the
    wrapper's own constraints applied to each member (as JSON Schema does)."""
    members = schema.get("oneOf") or schema.get("anyOf")
    wrapper = {k: v for k, v in schema.items() if k not in ("oneOf", "anyOf")}
    if members is None:
        types = schema.get("type")
        if isinstance(types, list) and len(types) > 1:
            return {t: {**wrapper, "type": t} for t in types}
        return {_type(schema) or "any": schema}
    out: dict[str, dict[str, Any]] = {}
    for i, member in enumerate(members):
        flat = _flatten(spec, member)
        for name, variant in _variants(spec, {**wrapper, **flat}).items():
            label = name
            if label in out:  # two objects (or two strings) in one union: tell them apart
                label = f"{name} {flat.get('title') or member.get('$ref', '').rsplit('/', 1)[-1] or i}"
            out[label] = variant
    return out


def _type(schema: Json) -> str | None:
    t = schema.get("type")
    if isinstance(t, list):
        return t[0] if len(t) == 1 else "|".join(sorted(t))
    if t is None and "properties" in schema:
        return "object"
    return t if isinstance(t, str) else None


def _enum(schema: Json) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    return list(schema["enum"]) if "enum" in schema else None


def _params(spec: Json, path: str, item: Json, operation: Json) -> dict[tuple[str, str], Json]:
    """An operation's parameters (the path item's, overridden by its own), keyed as the wire
    matches them: path parameters by their place in the path, headers case-blind, others by name."""
    found: dict[tuple[str, str], Json] = {}
    for raw in (*item.get("parameters", ()), *operation.get("parameters", ())):
        p = _pointer(spec, raw["$ref"]) if "$ref" in raw else raw
        found[(p["in"], p["name"].lower() if p["in"] == "header" else p["name"])] = p
    place = {m.group()[1:-1]: str(i) for i, m in enumerate(_TEMPLATE.finditer(path))}
    return {(k[0], place.get(k[1], k[1]) if k[0] == "path" else k[1]): v for k, v in found.items()}


Security = frozenset[frozenset[tuple[str, tuple[str, ...]]]]


def _security(requirements: list[Json]) -> Security:
    return frozenset(frozenset((name, tuple(sorted(scopes))) for name, scopes in r.items()) for r in requirements)


def _show(requirements: Security) -> str:
    ways = [" + ".join(f"{name}{list(scopes) if scopes else ''}" for name, scopes in sorted(r)) for r in requirements]
    return " or ".join(sorted(ways)) or "none"


def _scopes(scheme: Json) -> dict[str, set[str]]:
    """The scopes of each OAuth2 flow of ``scheme``."""
    return {flow: set(spec.get("scopes", {})) for flow, spec in scheme.get("flows", {}).items()}


def _no_scopes(scheme: Json) -> Json:
    """``scheme`` with its flows' scope lists left out (compared apart: ``_scopes``)."""
    if "flows" not in scheme:
        return scheme
    flows = {flow: {k: v for k, v in spec.items() if k != "scopes"} for flow, spec in scheme["flows"].items()}
    return {**scheme, "flows": flows}


def _without_docs(node: Any) -> Any:
    """``node`` without its descriptions: what a generated client takes from it."""
    if isinstance(node, dict):
        return {key: _without_docs(value) for key, value in node.items() if key != "description"}
    if isinstance(node, list):
        return [_without_docs(value) for value in node]
    return node
