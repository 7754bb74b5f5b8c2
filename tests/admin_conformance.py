"""Check the admin API's answers against its own OpenAPI document (``GET /v1/openapi.json``).

Installed by ``tests/harness.py`` as the admin resource's ``on_response`` hook, so every
admin response any test provokes (the admin, journal, import, console-adjacent tests…) is
validated against the schema of its route and status, not only the ones a test asserts.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from openapi_core import OpenAPI
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.testing import MockRequest, MockResponse

from gateway.admin import openapi_document


@lru_cache(maxsize=1)
def spec() -> OpenAPI:
    return OpenAPI.from_dict(openapi_document())


def check(method: str, path: str, status: int, content_type: str, body: bytes) -> list[str]:
    """Violations of the document by one answer (empty: it conforms)."""
    if path.startswith("/console"):
        return []
    request = MockRequest("http://127.0.0.1:8081", method.lower(), path)
    response = MockResponse(body, status_code=status, content_type=content_type)
    try:
        spec().validate_response(request, response)
    except (PathNotFound, OperationNotFound) as e:
        # a route the API does not have may only be refused (401 before routing, 404, or 400
        # for a path that does not percent-decode)
        if status not in (400, 401, 404, 405) or b'"error"' not in body:
            return [f"undocumented route answered {status}: {e}"]
    except Exception as e:  # noqa: BLE001 - every validation error is a violation
        detail: Any = getattr(e, "__cause__", None) or e
        return [f"{type(e).__name__}: {detail}"[:500]]
    return []
