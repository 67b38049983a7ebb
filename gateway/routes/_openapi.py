"""OpenAPI helpers for routes: error responses and examples, declared once."""

from __future__ import annotations

from typing import Any

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body

from contracts.v1 import Problem
from gateway.problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, PROBLEMS

__all__ = ["body", "example", "responses"]

#: Every ERP-backed operation can meet these.
ERP_FAILURES = ("erp-unavailable", "erp-circuit-open", "erp-busy", "erp-timeout", "too-many-requests")
#: Every /v1 operation needs a bearer token with its scope.
AUTH_FAILURES = ("unauthorized", "forbidden")


def example(summary: str, value: Any) -> Example:
    return Example(summary=summary, value=value)


def body(summary: str, value: Any) -> Any:
    """A request body parameter's OpenAPI description with one example."""
    return Body(examples=[Example(summary=summary, value=value)])


def responses(
    status: int, data: Any, description: str, examples: list[Example], *slugs: str
) -> dict[int, ResponseSpec]:
    """The success response with its examples, then one problem response per error status."""
    out = {
        status: ResponseSpec(data_container=data, description=description, examples=examples, generate_examples=False)
    }
    out.update(_problems(*slugs, *AUTH_FAILURES, *ERP_FAILURES))
    return out


def _problems(*slugs: str) -> dict[int, ResponseSpec]:
    """Problem responses for the given slugs, grouped by status, each with an example."""
    by_status: dict[int, list[str]] = {}
    for slug in ("validation-failed", *slugs):
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
                    },
                )
                for s in group
            ],
        )
    return out
