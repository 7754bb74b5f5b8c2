"""Hardened XML-RPC parsing and reply encoding (gateway.wire.parse)."""
from __future__ import annotations

import socket
import xmlrpc.client
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import FaultCode, GatewayError, InvalidRequestError, ParseError
from gateway.wire.encode import encode_fault, encode_response
from gateway.wire.parse import parse_method_call

CALL_HEAD = b'<?xml version="1.0" encoding="ISO-8859-1"?><methodCall><methodName>m</methodName>'


def one_value(value_xml: bytes) -> Any:
    body = CALL_HEAD + b"<params><param><value>" + value_xml + b"</value></param></params>" \
        b"</methodCall>"
    method, params = parse_method_call(body)
    assert method == "m"
    return params[0]


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("xml", "expected"), [
    (b"<int>42</int>", 42),
    (b"<i4>-7</i4>", -7),
    (b"<i8>9000000000000</i8>", 9000000000000),
    (b"<int> 99999999999999999999 </int>", 99999999999999999999),
    (b"<string>a &amp; b &lt;c&gt;</string>", "a & b <c>"),
    (b"<string></string>", ""),
    (b"<string/>", ""),
    (b"bare text", "bare text"),
    (b"  spaced  ", "  spaced  "),
    (b"", ""),
    (b"<double>25</double>", Decimal("25")),
    (b"<double>25.0</double>", Decimal("25.0")),
    (b"<double>-1.5e3</double>", Decimal("-1.5e3")),
    (b"<double>0.1000000000000000055511151231257827021181583404541015625</double>",
     Decimal("0.1000000000000000055511151231257827021181583404541015625")),
    (b"<boolean>1</boolean>", True),
    (b"<boolean>0</boolean>", False),
    (b"<nil/>", None),
    (b"<base64>aGVq\n</base64>", b"hej"),
    (b"<dateTime.iso8601>20150525T10:36:31</dateTime.iso8601>", "20150525T10:36:31"),
    (b"<array><data></data></array>", []),
    (b"<array><data><value>x</value><value><int>1</int></value></data></array>", ["x", 1]),
    (b"<struct></struct>", {}),
    (b"<struct><member><name>k</name><value><string>v</string></value></member></struct>",
     {"k": "v"}),
    (b"<string>Bl\xe5b\xe4rssylt &#8364;</string>", "Blåbärssylt €"),
    (b"<!-- comment --><int>5</int>", 5),
])
def test_value_types(xml: bytes, expected: Any) -> None:
    """Every XML-RPC type decodes to the documented Python type; doubles exactly."""
    value = one_value(xml)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(expected, Decimal):
        assert str(value) == str(expected)  # exact text, never via float


@pytest.mark.parametrize(("xml", "text"), [
    (b"<int>abc</int>", "<int> is not an integer"),
    (b"<int></int>", "<int> is not an integer"),
    (b"<int>1.5</int>", "<int> is not an integer"),
    (b"<int>" + b"9" * 5000 + b"</int>", "<int> is not an integer"),
    (b"<double>nan</double>", "<double> is not a number"),
    (b"<double>Infinity</double>", "<double> is not a number"),
    (b"<double>1,5</double>", "<double> is not a number"),
    (b"<double>1e999999</double>", "<double> is out of range"),
    (b"<double>1e-999</double>", "<double> is out of range"),
    (b"<boolean>2</boolean>", "<boolean> must be 0 or 1"),
    (b"<base64>!!!</base64>", "not valid base64"),
    (b"<float>1</float>", "unknown value type"),
    (b"<int>1</int><int>2</int>", "exactly one type element"),
    (b"<array><value>1</value></array>", "exactly one <data>"),
    (b"<struct><member><value>1</value></member></struct>", "<name> then <value>"),
    (b"<struct><member><name>a</name><value>1</value></member>"
     b"<member><name>a</name><value>2</value></member></struct>", "duplicate struct member"),
    (b"junk<int>1</int>", "unexpected text"),
    (b"<string><b>x</b></string>", "text only"),
])
def test_malformed_values_are_parse_errors(xml: bytes, text: str) -> None:
    """Malformed values give -32700 with a message saying what is wrong."""
    with pytest.raises(ParseError) as info:
        one_value(xml)
    assert info.value.fault_code == FaultCode.PARSE_ERROR
    assert text in info.value.fault_string


def test_no_params_and_methodname_whitespace() -> None:
    """A call without <params> has no params; the method name is stripped."""
    assert parse_method_call(b"<methodCall><methodName> x.y </methodName></methodCall>") == (
        "x.y", [])


@pytest.mark.parametrize("body", [
    b"<methodResponse><params/></methodResponse>",
    b"<methodCall><params/></methodCall>",
    b"<methodCall><methodName></methodName></methodCall>",
    b"<methodCall><methodName>a b</methodName></methodCall>",
    b"<methodCall><methodName>a</methodName><methodName>b</methodName></methodCall>",
    b"<methodCall><methodName>a</methodName><params><param/></params></methodCall>",
    b"<methodCall><methodName>a</methodName><params><value>1</value></params></methodCall>",
    b"<methodCall><methodName>a</methodName><other/></methodCall>",
    b"<ns:methodCall xmlns:ns='urn:x'><ns:methodName>a</ns:methodName></ns:methodCall>",
])
def test_not_a_method_call_is_invalid_request(body: bytes) -> None:
    """Well-formed XML that is not a proper methodCall → -32600."""
    with pytest.raises(InvalidRequestError) as info:
        parse_method_call(body)
    assert info.value.fault_code == FaultCode.INVALID_REQUEST


def test_encodings() -> None:
    """Declared ISO-8859-1 and UTF-8 are honoured; undeclared UTF-8 and Latin-1 both work."""
    call = "<methodCall><methodName>m</methodName><params><param><value>Blåbär €</value>" \
           "</param></params></methodCall>"
    latin = '<?xml version="1.0" encoding="ISO-8859-1"?>' + call.replace("€", "&#8364;")
    utf8 = '<?xml version="1.0" encoding="UTF-8"?>' + call
    assert parse_method_call(latin.encode("latin-1"))[1] == ["Blåbär €"]
    assert parse_method_call(utf8.encode("utf-8"))[1] == ["Blåbär €"]
    assert parse_method_call(call.encode("utf-8"))[1] == ["Blåbär €"]
    undeclared_latin = call.replace("€", "&#8364;").encode("latin-1")
    assert parse_method_call(undeclared_latin)[1] == ["Blåbär €"]
    py_style = ("<?xml version='1.0' encoding='iso-8859-1'?>\n" + call).encode(
        "latin-1", "xmlcharrefreplace")
    assert parse_method_call(py_style)[1] == ["Blåbär €"]


# ---------------------------------------------------------------------------------------------
# Hostile input
# ---------------------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<methodCall><methodName>m</methodName><params><param><value>&lol9;</value></param></params>
</methodCall>"""


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-CONTENT")
    return path


@pytest.fixture
def listener() -> Any:
    """A local TCP listener: any connection to it means the parser went to the network."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    sock.settimeout(0.2)
    yield sock
    sock.close()


def _assert_no_connection(sock: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        sock.accept()


def _hostile_bodies(secret_file: Path, port: int) -> dict[str, bytes]:
    url = f"http://127.0.0.1:{port}/evil.dtd".encode()
    file_url = secret_file.as_uri().encode()
    call = b"<methodCall><methodName>m</methodName><params><param><value>&xxe;</value>" \
           b"</param></params></methodCall>"
    return {
        "billion_laughs": BILLION_LAUGHS,
        "xxe_file": b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY xxe SYSTEM "' + file_url
                    + b'">]>' + call,
        "xxe_passwd": b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY xxe SYSTEM '
                      b'"file:///etc/passwd">]>' + call,
        "xxe_http": b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY xxe SYSTEM "' + url
                    + b'">]>' + call,
        "external_dtd": b'<?xml version="1.0"?><!DOCTYPE methodCall SYSTEM "' + url + b'">'
                        b"<methodCall><methodName>m</methodName></methodCall>",
        "parameter_entity": b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY % pe SYSTEM "' + url
                            + b'"> %pe; ]><methodCall><methodName>m</methodName></methodCall>',
        # UTF-16 hides "<!DOCTYPE" from a byte scan: the parsed-tree check must catch it.
        "utf16_xxe": ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE m [<!ENTITY xxe '
                      f'SYSTEM "{secret_file.as_uri()}">]>' + call.decode()).encode("utf-16"),
        "utf16_external_dtd": ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE methodCall '
                               f'SYSTEM "{url.decode()}"><methodCall><methodName>m'
                               '</methodName></methodCall>').encode("utf-16"),
    }


@pytest.mark.parametrize("name", ["billion_laughs", "xxe_file", "xxe_passwd", "xxe_http",
                                  "external_dtd", "parameter_entity", "utf16_xxe",
                                  "utf16_external_dtd"])
def test_dtds_and_entities_are_refused_without_io(name: str, secret_file: Path,
                                                  listener: socket.socket) -> None:
    """Billion laughs, XXE (file and http), external DTDs and parameter entities → -32700,
    and neither the file's content nor a network connection is ever touched."""
    body = _hostile_bodies(secret_file, listener.getsockname()[1])[name]
    with pytest.raises(ParseError) as info:
        parse_method_call(body)
    assert "TOP-SECRET" not in info.value.fault_string
    assert "root:" not in info.value.fault_string
    _assert_no_connection(listener)


def test_deep_nesting_is_refused() -> None:
    """10 000 nested arrays → -32700 (libxml2's own limit or ours), quickly, no recursion."""
    depth = 10_000
    value = b"<array><data><value>" * depth + b"1" + b"</value></data></array>" * depth
    with pytest.raises(ParseError):
        one_value(value)


def test_depth_limit_is_configurable() -> None:
    """Our own element-depth limit applies below libxml2's (methodCall counts as 1)."""
    nested = b"<array><data><value>" * 5 + b"1" + b"</value></data></array>" * 5
    body = CALL_HEAD + b"<params><param><value>" + nested + b"</value></param></params>" \
        b"</methodCall>"
    assert parse_method_call(body, max_depth=32)[1] == [[[[[["1"]]]]]]
    with pytest.raises(ParseError, match="nesting too deep"):
        parse_method_call(body, max_depth=10)


@pytest.mark.parametrize("body", [
    b"",
    b"   ",
    b"\x00\x01\x02\xff\xfe garbage",
    b"<methodCall><methodName>m</methodName><params>",
    b"<methodCall><methodName>m</methodName></methodcall>",
    b'<?xml version="1.0" encoding="no-such-encoding"?><methodCall/>',
    b'<?xml version="1.0" encoding="UTF-8"?><methodCall><methodName>m\xe5\xff</methodName>'
    b"</methodCall>",
    b"<methodCall><methodName>&undefined;</methodName></methodCall>",
    "<methodCall/>",  # not bytes
])
def test_garbage_truncated_and_wrong_encoding(body: Any) -> None:
    """Garbage, truncated XML, unknown or lying encoding declarations → -32700."""
    with pytest.raises(ParseError):
        parse_method_call(body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_gateway_errors(body: bytes) -> None:
    """Arbitrary bytes never raise anything but a GatewayError."""
    try:
        parse_method_call(body)
    except GatewayError:
        pass


_TAGS = ["methodCall", "methodName", "params", "param", "value", "array", "data", "struct",
         "member", "name", "int", "i4", "i8", "string", "double", "boolean", "nil",
         "base64", "dateTime.iso8601", "x"]
_TEXT = st.text(alphabet=st.sampled_from(list("0123456789.-+eE abcxyz&;<>#'\"\n\t")),
                max_size=12)


def _element(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda tag, inner: f"<{tag}>{''.join(inner)}</{tag}>",
                     st.sampled_from(_TAGS), st.lists(children, max_size=4))


_XMLISH = st.recursive(_TEXT, _element, max_leaves=30)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_XMLISH, st.sampled_from(["", '<?xml version="1.0"?>',
                                 '<?xml version="1.0" encoding="ISO-8859-1"?>']))
def test_random_xmlish_only_raises_gateway_errors(inner: str, declaration: str) -> None:
    """Random well-formed-ish XML built from XML-RPC tags never raises a non-GatewayError."""
    body = (declaration + f"<methodCall><methodName>m</methodName><params><param><value>"
            f"{inner}</value></param></params></methodCall>").encode("latin-1")
    try:
        parse_method_call(body)
    except GatewayError:
        pass
    try:
        parse_method_call((declaration + inner).encode("latin-1"))
    except GatewayError:
        pass


# Characters XML 1.0 can carry; CR is excluded because XML parsers normalise it to LF.
_XML_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\ufffe\uffff",
                           min_codepoint=0x9).filter(
    lambda c: c in "\t\n" or ord(c) >= 0x20)
_LATIN1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF)
_SCALARS = (st.integers(min_value=-(2**31), max_value=2**31 - 1)
            | st.text(_LATIN1, max_size=20) | st.text(_XML_CHARS, max_size=20)
            | st.booleans() | st.floats(allow_nan=False, allow_infinity=False))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(_XML_CHARS, max_size=8), inner, max_size=4),
                       max_leaves=20)


def _expected(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, list):
        return [_expected(v) for v in value]
    if isinstance(value, dict):
        return {k: _expected(v) for k, v in value.items()}
    return value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_VALUES, max_size=5))
def test_round_trip_with_stdlib_marshaller(params: list[Any]) -> None:
    """What Python's marshaller sends (as PY's ServerProxy encodes it) parses back exactly;
    doubles come back as Decimal(repr(float))."""
    text = xmlrpc.client.dumps(tuple(params), "some.method", encoding="iso-8859-1")
    body = text.encode("iso-8859-1", "xmlcharrefreplace")
    method, decoded = parse_method_call(body, max_depth=64)
    assert method == "some.method"
    assert decoded == _expected(params)


# ---------------------------------------------------------------------------------------------
# Encoding replies
# ---------------------------------------------------------------------------------------------


def test_encode_response_parses_with_stdlib() -> None:
    """encode_response output is ISO-8859-1, declared, and xmlrpc.client.loads reads it."""
    value = {"risk": "ok", "list": ["9000000001", 1, True, False, 2.5, [], {}],
             "text": "Blåbär € <&> \"q\" 'a'", "cr": "a\rb"}
    payload = encode_response(value)
    assert payload.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')
    assert b"&#8364;" in payload and "Blåbär".encode("latin-1") in payload
    (decoded,), method = xmlrpc.client.loads(payload)
    assert method is None and decoded == value


def test_encode_response_shapes() -> None:
    """Replies the SDKs need: a string, a 2-element array, an int."""
    for value in ("ok", ["ok", "9000000001"], 4990, "20150525T103631"):
        assert xmlrpc.client.loads(encode_response(value))[0] == (value,)
    assert b"<string>ok</string>" in encode_response("ok")
    assert b"<int>4990</int>" in encode_response(4990)
    assert b"<boolean>1</boolean>" in encode_response(True)


@pytest.mark.parametrize("value", [None, Decimal("1.5"), float("nan"), float("inf"), 2**31,
                                   -(2**31) - 1, object(), {1: "x"}, "nul\x00", "\ud800",
                                   ["ok", None], {"a": Decimal(1)}])
def test_encode_response_refuses_unsafe_values(value: Any) -> None:
    """None, Decimal, NaN, big ints, non-str keys and XML-illegal chars raise TypeError."""
    with pytest.raises(TypeError):
        encode_response(value)


def test_encode_response_refuses_cycles() -> None:
    """A self-referencing list is refused instead of recursing forever."""
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(TypeError):
        encode_response(loop)


def test_encode_fault_parses_with_int_code() -> None:
    """encode_fault gives a standard fault: int faultCode, escaped faultString, char refs."""
    payload = encode_fault(FaultCode.INVALID_ESTORE_SECRET,
                           "invalid_estore_secret: bad <digest> & € \x00")
    assert b"&#8364;" in payload
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(payload)
    assert info.value.faultCode == 9114 and type(info.value.faultCode) is int
    assert info.value.faultString == "invalid_estore_secret: bad <digest> & € ?"
    assert b"<int>9114</int>" in payload and b"FaultCode" not in payload
    with pytest.raises(TypeError):
        encode_fault("9114", "x")  # type: ignore[arg-type]


def test_our_parser_reads_our_replies_structurally() -> None:
    """Our own lxml parser accepts our replies as XML (sanity for the declaration/escaping)."""
    payload = encode_response(["ok", "Blåbär €"])
    body = payload.replace(b"methodResponse", b"methodCall").replace(
        b"<params>", b"<methodName>r</methodName><params>")
    assert parse_method_call(body) == ("r", [["ok", "Blåbär €"]])
