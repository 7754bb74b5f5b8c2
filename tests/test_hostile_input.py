"""Arbitrary bytes and paths at every HTTP edge of a real gateway: each answers with a
refusal in its own dialect (a 4xx; a ``<fault>`` on the XML-RPC edge, whose clients expect
HTTP 200) and no request writes a traceback to the log.

Edges: the legacy XML-RPC edge, the KCO v2 recurring edge (POST and GET), the admin API's
JSON routes and any other path (with the bearer token), and the console (pages with a
bearer token, sign-in without). Bodies are arbitrary bytes, deeply nested JSON and
JSON-shaped documents; paths are arbitrary bytes, raw or percent-encoded.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_from_bytes, unquote_to_bytes

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.live import LiveGateway, Response, tracebacks

ADMIN = {b"Authorization": b"Bearer sandbox-admin"}
CONSOLE_PAGES = {b"", b"reservation", b"journal", b"pending", b"discrepancies", b"expiring",
                 b"digest", b"signin", b"signout"}
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    gw = LiveGateway.start(tmp_path_factory.mktemp("hostile"))
    try:
        yield gw
    finally:
        gw.stop()


def deep(depth: int, opener: bytes) -> bytes:
    closer = b"]" if opener == b"[" else b"}"
    inner = opener if opener == b"[" else b'{"a":'
    return inner * depth + (b"1" if opener == b"{" else b"") + closer * depth


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=20)

bodies = st.one_of(
    st.binary(max_size=2048),
    st.builds(deep, st.integers(min_value=1, max_value=120_000), st.sampled_from([b"[", b"{"])),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["eid", "order_id", "rno", "merchant", "cart", "activate",
                                     "reservations", "recurring_token", "customer_token"]),
                    json_values, max_size=5).map(lambda v: json.dumps(v).encode()),
)

#: Path bytes: percent-encoded arbitrary bytes, or raw bytes that can stand in a request
#: line (no space, CR, LF).
segments = st.one_of(
    st.binary(max_size=24).map(lambda b: quote_from_bytes(b, safe="").encode("ascii")),
    st.binary(max_size=24).map(lambda b: bytes(c for c in b if c not in b" \r\n\x00#?")),
)


def once(live: LiveGateway, listener: str, method: bytes, path: bytes, body: bytes = b"",
         headers: dict[bytes, bytes] | None = None) -> Response:
    live.take_events()
    answer = live.request(listener, method, path, body, headers)
    found = tracebacks(live.take_events())
    assert not found, (method, path, body[:200], found)
    assert answer.status < 500, (method, path, body[:200], answer)
    return answer


def http_layer_400(answer: Response) -> bool:
    """Twisted's own answer to a request line it cannot parse (raw control bytes in the
    path): no edge ever sees such a request."""
    return answer.status == 400 and not answer.body and b"content-type" not in answer.headers


def json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body or b"{}"), dict)
    except (ValueError, RecursionError):
        return False


def is_fault(answer: Response) -> bool:
    if http_layer_400(answer):
        return True
    return answer.status == 200 and b"text/xml" in answer.content_type and \
        b"<fault>" in answer.body


def kco_refusal(answer: Response) -> bool:
    if http_layer_400(answer):
        return True
    return 400 <= answer.status < 500 and b"json" in answer.content_type and \
        json.loads(answer.body)["http_status_code"] == answer.status


@SETTINGS
@given(body=bodies, path=segments)
def test_xmlrpc_edge(live: LiveGateway, body: bytes, path: bytes) -> None:
    answer = once(live, "legacy", b"POST", b"/" + path, body)
    if b"checkout" in unquote_to_bytes(path):
        assert 400 <= answer.status < 500
    else:
        assert is_fault(answer) or 400 <= answer.status < 500, answer


@SETTINGS
@given(body=bodies, token=segments)
def test_kco_edge(live: LiveGateway, body: bytes, token: bytes) -> None:
    answer = once(live, "legacy", b"POST", b"/checkout/recurring/" + token + b"/orders", body,
                  {b"Authorization": b"Klarna " + body[:44].hex().encode()})
    assert kco_refusal(answer), answer
    answer = once(live, "legacy", b"GET", b"/checkout/recurring/" + token,
                  headers={b"Authorization": b"Klarna x"})
    assert kco_refusal(answer), answer


@SETTINGS
@given(body=bodies, route=st.sampled_from([b"/v1/reservations", b"/v1/imports",
                                           b"/v1/recurring-tokens"]))
def test_admin_json_routes(live: LiveGateway, body: bytes, route: bytes) -> None:
    """Anything but a JSON object is a 400; an object gets whatever the route makes of it
    (a 4xx for a bad field, or the empty import's report), never a 5xx. (``POST
    /v1/sandbox/orders`` is a 404 here, outside ``serve --sandbox``: the boundary test
    covers it.)"""
    answer = once(live, "admin", b"POST", route, body, ADMIN)
    if not json_object(body):
        assert answer.status == 400, answer


@SETTINGS
@given(first=segments, rest=st.lists(segments, max_size=3), query=segments,
       method=st.sampled_from([b"GET", b"POST", b"DELETE"]))
def test_admin_paths(live: LiveGateway, first: bytes, rest: list[bytes], query: bytes,
                     method: bytes) -> None:
    decoded = unquote_to_bytes(first)
    assume(decoded not in (b"healthz", b"readyz", b"metrics", b"console", b"v1"))
    path = b"/".join([b"", first, *rest])
    answer = once(live, "admin", method, path + b"?" + query, b"", ADMIN)
    assert 400 <= answer.status < 500, answer


@SETTINGS
@given(page=segments, query=segments)
def test_console_pages(live: LiveGateway, page: bytes, query: bytes) -> None:
    assume(unquote_to_bytes(page) not in CONSOLE_PAGES)
    answer = once(live, "admin", b"GET", b"/console/" + page + b"?" + query, b"", ADMIN)
    assert 400 <= answer.status < 500, answer


@SETTINGS
@given(body=bodies, query=segments)
def test_console_signin(live: LiveGateway, body: bytes, query: bytes) -> None:
    origin = b"http://127.0.0.1:%d" % live.address("admin")[1]
    answer = once(live, "admin", b"POST", b"/console/signin?" + query, body,
                  {b"Origin": origin, b"Content-Type": b"application/x-www-form-urlencoded"})
    assert 400 <= answer.status < 500, answer


def test_the_deepest_bodies_at_the_limit(live: LiveGateway, tmp_path: Path) -> None:
    """The examples above, at their worst: a body of nothing but nesting, as large as the
    listener takes, on each JSON edge."""
    limit = live.gateway.config.gateway.max_body_bytes
    worst = b"[" * (limit // 2) + b"]" * (limit // 2)
    answer = once(live, "legacy", b"POST", b"/checkout/recurring/ct-1/orders", worst)
    assert answer.status == 400 and kco_refusal(answer)
    answer = once(live, "admin", b"POST", b"/v1/imports", worst, ADMIN)
    assert answer.status == 400
