"""Check HTTP responses against Klarna's published OpenAPI descriptions.

``OpenApiChecker.check(method, path, status, headers, body)`` returns a list of violations
(empty = conforms). It is installed as the sandbox's ``on_response`` hook by the ``sandbox``
fixture, so every response any test provokes is checked, not only the ones a test asserts.

Rules:

* the status must be documented for the operation; the cross-cutting errors of
  docs/order-management.md#openapi-conformance (400, 401, 404, 405, 409, 413, 415, 422, 429,
  500, 502-504) are accepted on every operation, because the vendor file lists only
  endpoint-specific ones;
* a JSON body must validate against the documented response schema (jsonschema, Draft 4
  semantics as OpenAPI 3.0 uses, with ``date-time``/``date`` formats checked);
* every 4xx/5xx body must have Klarna's error shape (``error_code``, ``error_messages``,
  ``correlation_id``);
* 201 must carry the documented headers (``Capture-Id``/``Refund-Id`` and an absolute
  ``Location``); 204 and 202 (the customer-token status change, "Empty response" in
  Klarna's docs) must have an empty body; 200 must be ``application/json``;
* a request to a path/method the specs do not describe may only be answered 404 or 405.

The vendor files have known blemishes (tests/data/vendor/README.md): empty ``enum`` entries
are dropped and ``order_line.type``'s single pipe-joined enum is split into its values before any
validator is built.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

VENDOR_DIR = Path(__file__).resolve().parent / "data" / "vendor"
OM_SPEC = VENDOR_DIR / "klarna-order-management.openapi.yml"
PAYMENTS_SPEC = VENDOR_DIR / "klarna-payments.openapi.yml"
CUSTOMER_TOKEN_SPEC = VENDOR_DIR / "klarna-customer-token.openapi.yml"

#: Errors every Klarna operation may answer (docs/order-management.md#openapi-conformance).
GLOBAL_ERROR_STATUSES = frozenset({400, 401, 404, 405, 409, 413, 415, 422, 429, 500, 502, 503,
                                   504})

ERROR_SHAPE: dict[str, Any] = {
    "type": "object",
    "required": ["error_code", "error_messages", "correlation_id"],
    "properties": {
        "error_code": {"type": "string", "minLength": 1},
        "error_messages": {"type": "array", "items": {"type": "string"}},
        "correlation_id": {"type": "string", "minLength": 1},
    },
}


def patch_spec(node: Any) -> Any:
    """Repair the vendor blemishes in place: empty enums go, a pipe-joined enum is split."""
    if isinstance(node, dict):
        enum = node.get("enum")
        if isinstance(enum, list):
            values = [v for v in enum if v is not None]
            if not values:
                del node["enum"]
            elif len(values) == 1 and isinstance(values[0], str) and "|" in values[0]:
                node["enum"] = values[0].split("|")
            else:
                node["enum"] = values
        for value in node.values():
            patch_spec(value)
    elif isinstance(node, list):
        for value in node:
            patch_spec(value)
    return node


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass(frozen=True)
class _Operation:
    uri: str
    template: str
    method: str
    pattern: re.Pattern[str]
    params: int
    responses: dict[str, Any]


class OpenApiChecker:
    """Validates responses against one or more OpenAPI 3.0 files (OM, Payments, Customer Token)."""

    def __init__(self, spec_paths: tuple[Path, ...] = (OM_SPEC, PAYMENTS_SPEC,
                                                       CUSTOMER_TOKEN_SPEC)) -> None:
        registry: Registry = Registry()
        self._operations: list[_Operation] = []
        self._templates: list[re.Pattern[str]] = []
        for spec_path in spec_paths:
            document = patch_spec(yaml.safe_load(spec_path.read_text(encoding="utf-8")))
            uri = f"urn:klarna-spec:{spec_path.stem}"
            registry = registry.with_resource(
                uri, Resource.from_contents(document, default_specification=DRAFT4))
            for template, item in document.get("paths", {}).items():
                regex = re.compile(
                    "".join(r"[^/]+" if part.startswith("{") else re.escape(part)
                            for part in re.split(r"(\{[^}]+\})", template)) + "$")
                self._templates.append(regex)
                for method, operation in item.items():
                    if not isinstance(operation, dict) or "responses" not in operation:
                        continue
                    self._operations.append(_Operation(
                        uri, template, method.upper(), regex, template.count("{"),
                        operation["responses"]))
        self._registry = registry
        self._validators: dict[str, Draft4Validator] = {}
        self._error_validator = Draft4Validator(ERROR_SHAPE)

    def _find(self, method: str, path: str) -> _Operation | None:
        candidates = [op for op in self._operations
                      if op.method == method and op.pattern.match(path)]
        return min(candidates, key=lambda op: op.params) if candidates else None

    def _validator(self, ref: str) -> Draft4Validator:
        if ref not in self._validators:
            self._validators[ref] = Draft4Validator(
                {"$ref": ref}, registry=self._registry,
                format_checker=Draft4Validator.FORMAT_CHECKER)
        return self._validators[ref]

    def check(self, method: str, path: str, status: int, headers: dict[str, str],
              body: bytes) -> list[str]:
        """Violations of the contract by one response (empty list when it conforms)."""
        method = method.upper()
        where = f"{method} {path} -> {status}"
        lowered = {k.lower(): v for k, v in headers.items()}
        problems: list[str] = []
        document: Any = None
        if body:
            try:
                document = json.loads(body)
            except ValueError:
                problems.append(f"{where}: body is not JSON: {body[:80]!r}")
        if status >= 400:
            if document is None:
                problems.append(f"{where}: error response without a JSON error body")
            else:
                problems += [f"{where}: error body: {e.message}"
                             for e in self._error_validator.iter_errors(document)]
        operation = self._find(method, path)
        if operation is None:
            if status not in (404, 405):
                problems.append(f"{where}: undocumented operation answered {status}")
            return problems
        response = operation.responses.get(str(status))
        if response is None:
            if status not in GLOBAL_ERROR_STATUSES:
                problems.append(f"{where}: status {status} not documented for "
                                f"{method} {operation.template}")
            return problems
        if status in (202, 204) and body:
            problems.append(f"{where}: {status} with a body")
        if status == 201:
            for name in response.get("headers", {}):
                value = lowered.get(name.lower())
                if not value:
                    problems.append(f"{where}: missing header {name}")
                elif name.lower() == "location" and not re.match(r"https?://", value):
                    problems.append(f"{where}: Location is not absolute: {value}")
        content = response.get("content", {}).get("application/json")
        if status == 200 and content is not None:
            if not lowered.get("content-type", "").startswith("application/json"):
                problems.append(f"{where}: Content-Type is {lowered.get('content-type')!r}")
            if document is None and not problems:
                problems.append(f"{where}: 200 without a JSON body")
        if content is not None and document is not None and "schema" in content:
            schema = content["schema"]
            if status in (201, 204) and schema.get("type") == "string":
                return problems  # spec decoration of empty answers; SDKs ignore it
            ref = operation.uri + "#" + _pointer("paths", operation.template,
                                                 method.lower(), "responses", str(status),
                                                 "content", "application/json", "schema")
            for error in self._validator(ref).iter_errors(document):
                location = "/".join(str(p) for p in error.absolute_path) or "<root>"
                problems.append(f"{where}: {location}: {error.message[:200]}")
        return problems


@lru_cache(maxsize=1)
def default_checker() -> OpenApiChecker:
    """A process-wide checker (parsing the YAML takes a moment)."""
    return OpenApiChecker()
