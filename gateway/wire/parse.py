"""Hardened XML-RPC wire format: parse a ``methodCall`` (and, for replays, a ``methodResponse``);
:mod:`gateway.wire.encode` writes the replies.

Why not ``xmlrpc.client.loads`` / ``twisted.web.xmlrpc``: the stdlib parser is not hardened
against hostile XML (the Python docs say so), turns ``<double>`` into a binary float (PHP
sends ``0.1000000000000000055511…`` and the money maths needs the exact decimal), and its
marshaller lets Python text leak into replies. This module is the one place where bytes from
the network become Python values and back.

Parsing rules (docs/legacy-protocol.md#parsing):

* lxml with entity resolution, DTD loading and network access off; any DOCTYPE, entity
  declaration or entity reference is refused outright (billion laughs, XXE, parameter
  entities), and a resolver that refuses everything is installed as a second line of defence.
* The declared encoding is honoured (the SDKs declare ISO-8859-1; PY's HTTP Content-Type has
  no charset, so the XML declaration is the only truth). A document *without* a declaration
  that is not valid UTF-8 is re-read as ISO-8859-1, because a hand-written Latin-1 request is
  far likelier than anything else.
* Element nesting is limited (``max_depth``, counted in XML elements from ``methodCall`` = 1);
  the SDKs' deepest call (``update`` with goods) needs 17.
* Every failure is a :class:`~gateway.errors.GatewayError`: ``ParseError`` (-32700) for bytes
  that are not acceptable XML-RPC, ``InvalidRequestError`` (-32600) for well-formed XML that
  is not a ``methodCall``.
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeVar

from lxml import etree

from gateway.errors import GatewayError, InvalidRequestError, ParseError

_T = TypeVar("_T")

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "MethodResponse",
    "parse_method_call",
    "parse_method_response",
    "replace_params",
]

#: Default element-nesting limit of :func:`parse_method_call`.
DEFAULT_MAX_DEPTH: Final = 32

# Numbers longer than this are refused: Python's int() is quadratic in the digit count and no
# SDK sends more than ~20 digits (ints) or ~440 characters (PHP's 128-decimal doubles of
# 1e300-sized values).
_MAX_INT_CHARS: Final = 100
_MAX_DOUBLE_CHARS: Final = 1100
_MAX_ERROR_DETAIL: Final = 200
_MAX_DOUBLE_EXPONENT: Final = 400
_LXML_LOCATION_RE: Final = re.compile(r"\s*\(<string>, line \d+\)$")

_INT_RE: Final = re.compile(r"[+-]?[0-9]+")
_DOUBLE_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# XML-RPC spec: "upper and lower-case A-Z, the numeric characters, 0-9, underscore, dot,
# colon and slash".
_METHOD_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.:/]{1,128}")
_DECLARED_ENCODING_RE: Final = re.compile(
    rb"""^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z0-9._-]+)["']"""
)
# Characters XML 1.0 cannot carry at all, not even as character references.
_XML_ILLEGAL_RE: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

_SCALAR_TAGS: Final = frozenset(
    {"int", "i4", "i8", "string", "double", "boolean", "nil", "base64", "dateTime.iso8601"}
)


class _RefuseAllResolver(etree.Resolver):
    """Refuses every external resource lxml would like to load (DTDs, entities, XInclude)."""

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:  # noqa: ARG002
        raise ParseError("external resources are not allowed")


def _make_parser(encoding: str | None = None) -> etree.XMLParser:
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        encoding=encoding,
    )
    parser.resolvers.add(_RefuseAllResolver())
    return parser


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def parse_method_call(
    body: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[str, list[Any]]:
    """Parse an XML-RPC ``methodCall`` document.

    Args:
        body: the raw HTTP request body.
        max_depth: maximum element nesting (``methodCall`` itself is depth 1).

    Returns:
        ``(method_name, params)``. Values: ``<int>/<i4>/<i8>`` → ``int`` (unbounded),
        ``<string>``/bare text → ``str``, ``<double>`` → exact ``Decimal``, ``<boolean>`` →
        ``bool``, ``<array>`` → ``list``, ``<struct>`` → ``dict``, ``<nil/>`` → ``None``,
        ``<base64>`` → ``bytes``, ``<dateTime.iso8601>`` → ``str``.

    Raises:
        ParseError: not acceptable XML (syntax, DTD/entities, too deep, malformed value).
        InvalidRequestError: well-formed XML that is not a ``methodCall``.
    """
    return _parse_document(body, max_depth, _decode_method_call, "request")


def _parse_document(
    body: bytes, max_depth: int, decode: Callable[[etree._Element], _T], what: str
) -> _T:
    """Parse, bound the depth and ``decode`` one document (a request or a response).

    The one place where "only ``GatewayError`` escapes" is kept: requests and the answers
    the recorder reads get the same hardening.
    """
    try:
        root = _parse_xml(body)
        _check_depth(root, max_depth)
        return decode(root)
    except GatewayError:
        raise
    except RecursionError:
        raise ParseError("nesting too deep") from None
    except Exception as exc:  # noqa: BLE001 - the contract is "only GatewayError escapes"
        raise ParseError(f"malformed {what}", debug_context=repr(exc)) from None


def _parse_xml(body: bytes) -> etree._Element:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise ParseError("request body must be bytes")
    body = bytes(body)
    if not body.strip():
        raise ParseError("empty request body")
    # Cheap pre-check for the common encodings; the tree check below covers the rest
    # (e.g. UTF-16, where these byte strings do not appear).
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise ParseError("DTDs and entity declarations are not allowed")
    try:
        root = etree.fromstring(body, _make_parser())
    except etree.XMLSyntaxError as exc:
        if _DECLARED_ENCODING_RE.match(body) is None and _is_encoding_error(exc):
            try:
                root = etree.fromstring(body, _make_parser("iso-8859-1"))
            except etree.XMLSyntaxError as exc2:
                raise ParseError(f"malformed XML: {_detail(exc2)}") from None
        else:
            raise ParseError(f"malformed XML: {_detail(exc)}") from None
    except LookupError as exc:
        raise ParseError(f"unsupported encoding: {_detail(exc)}") from None
    except ValueError as exc:  # e.g. lxml refusing an unknown encoding name
        raise ParseError(f"malformed XML: {_detail(exc)}") from None
    if root is None:
        raise ParseError("malformed XML: no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise ParseError("DTDs and entity declarations are not allowed")
    return root


def _is_encoding_error(exc: etree.XMLSyntaxError) -> bool:
    text = str(exc).lower()
    return "encoding" in text or "utf-8" in text or "bytes" in text


def _detail(exc: BaseException) -> str:
    text = _LXML_LOCATION_RE.sub("", str(exc).replace("\n", " ").strip())
    return text[:_MAX_ERROR_DETAIL] if text else type(exc).__name__


def _check_depth(root: etree._Element, max_depth: int) -> None:
    """Refuse documents nested deeper than ``max_depth`` elements, without recursion."""
    stack: list[tuple[etree._Element, int]] = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > max_depth:
            raise ParseError(f"nesting too deep (more than {max_depth} levels)")
        for child in element:
            if child.tag is etree.Entity:
                raise ParseError("entity references are not allowed")
            stack.append((child, depth + 1))


def _element_children(element: etree._Element, where: str) -> list[etree._Element]:
    """The element children, refusing stray non-whitespace text and entity nodes."""
    children: list[etree._Element] = []
    if element.text is not None and element.text.strip():
        raise ParseError(f"unexpected text in <{where}>")
    for child in element:
        if not isinstance(child.tag, str):
            # Comments and PIs are removed by the parser; anything else (entities) is not OK.
            raise ParseError("entity references are not allowed")
        if child.tail is not None and child.tail.strip():
            raise ParseError(f"unexpected text in <{where}>")
        children.append(child)
    return children


def _decode_method_call(root: etree._Element) -> tuple[str, list[Any]]:
    if root.tag != "methodCall":
        raise InvalidRequestError(f"root element must be <methodCall>, not <{_tag_name(root)}>")
    if root.attrib:
        raise InvalidRequestError("<methodCall> takes no attributes")
    children = _element_children(root, "methodCall")
    names = [c for c in children if c.tag == "methodName"]
    params_elements = [c for c in children if c.tag == "params"]
    others = [c for c in children if c.tag not in ("methodName", "params")]
    if others:
        raise InvalidRequestError(f"unexpected element <{_tag_name(others[0])}> in <methodCall>")
    if len(names) != 1:
        raise InvalidRequestError("<methodCall> must contain exactly one <methodName>")
    if len(params_elements) > 1:
        raise InvalidRequestError("<methodCall> must contain at most one <params>")
    name_element = names[0]
    if len(name_element):
        raise InvalidRequestError("<methodName> must contain text only")
    method = (name_element.text or "").strip()
    if not _METHOD_NAME_RE.fullmatch(method):
        raise InvalidRequestError("<methodName> is missing or not a valid method name")
    params: list[Any] = []
    if params_elements:
        for param in _element_children(params_elements[0], "params"):
            if param.tag != "param":
                raise InvalidRequestError(f"unexpected element <{_tag_name(param)}> in <params>")
            values = _element_children(param, "param")
            if len(values) != 1 or values[0].tag != "value":
                raise InvalidRequestError("<param> must contain exactly one <value>")
            params.append(_decode_value(values[0], f"param {len(params)}"))
    return method, params


def _tag_name(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        return "?"
    return etree.QName(tag).localname[:64] if tag.startswith("{") else tag[:64]


def _decode_value(value: etree._Element, where: str) -> Any:
    """Decode one ``<value>`` element. ``where`` names it in error messages."""
    if value.attrib:
        raise ParseError(f"{where}: <value> takes no attributes")
    children = _element_children(value, "value") if len(value) else []
    if not children:
        # No type element: the text is a string (whitespace included, per the spec).
        return value.text or ""
    if len(children) != 1:
        raise ParseError(f"{where}: <value> must contain exactly one type element")
    typed = children[0]
    tag = typed.tag
    if tag == "array":
        return _decode_array(typed, where)
    if tag == "struct":
        return _decode_struct(typed, where)
    if tag not in _SCALAR_TAGS:
        raise ParseError(f"{where}: unknown value type <{_tag_name(typed)}>")
    if len(typed):
        raise ParseError(f"{where}: <{tag}> must contain text only")
    text = typed.text or ""
    if tag == "string":
        return text
    if tag in ("int", "i4", "i8"):
        return _decode_int(text, tag, where)
    if tag == "double":
        return _decode_double(text, where)
    if tag == "boolean":
        return _decode_boolean(text, where)
    if tag == "nil":
        if text.strip():
            raise ParseError(f"{where}: <nil/> must be empty")
        return None
    if tag == "base64":
        return _decode_base64(text, where)
    # dateTime.iso8601: kept as the string it is; no served call takes one.
    return text.strip()


def _decode_int(text: str, tag: str, where: str) -> int:
    stripped = text.strip()
    if len(stripped) > _MAX_INT_CHARS or not _INT_RE.fullmatch(stripped):
        raise ParseError(f"{where}: <{tag}> is not an integer: {stripped[:40]!r}")
    return int(stripped)


def _decode_double(text: str, where: str) -> Decimal:
    stripped = text.strip()
    if len(stripped) > _MAX_DOUBLE_CHARS or not _DOUBLE_RE.fullmatch(stripped):
        raise ParseError(f"{where}: <double> is not a number: {stripped[:40]!r}")
    try:
        value = Decimal(stripped)
    except InvalidOperation:  # pragma: no cover - the regex already rules this out
        raise ParseError(f"{where}: <double> is not a number") from None
    # An IEEE double never exceeds ~1.8e308 nor goes below ~5e-324; refusing exponents far
    # outside that keeps "1e999999" from turning into a million-digit number downstream.
    if value and not -_MAX_DOUBLE_EXPONENT <= value.adjusted() <= _MAX_DOUBLE_EXPONENT:
        raise ParseError(f"{where}: <double> is out of range")
    return value


def _decode_boolean(text: str, where: str) -> bool:
    stripped = text.strip().lower()
    if stripped in ("1", "true"):
        return True
    if stripped in ("0", "false"):
        return False
    raise ParseError(f"{where}: <boolean> must be 0 or 1")


def _decode_base64(text: str, where: str) -> bytes:
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ParseError(f"{where}: <base64> is not valid base64") from None


def _decode_array(array: etree._Element, where: str) -> list[Any]:
    if array.attrib:
        raise ParseError(f"{where}: <array> takes no attributes")
    children = _element_children(array, "array")
    if len(children) != 1 or children[0].tag != "data":
        raise ParseError(f"{where}: <array> must contain exactly one <data>")
    result: list[Any] = []
    for item in _element_children(children[0], "data"):
        if item.tag != "value":
            raise ParseError(f"{where}: unexpected element <{_tag_name(item)}> in <data>")
        result.append(_decode_value(item, f"{where}[{len(result)}]"))
    return result


def _decode_struct(struct: etree._Element, where: str) -> dict[str, Any]:
    if struct.attrib:
        raise ParseError(f"{where}: <struct> takes no attributes")
    result: dict[str, Any] = {}
    for member in _element_children(struct, "struct"):
        if member.tag != "member":
            raise ParseError(f"{where}: unexpected element <{_tag_name(member)}> in <struct>")
        parts = _element_children(member, "member")
        tags = [p.tag for p in parts]
        if tags != ["name", "value"]:
            raise ParseError(f"{where}: <member> must contain <name> then <value>")
        name_element, value_element = parts
        if len(name_element):
            raise ParseError(f"{where}: <name> must contain text only")
        name = name_element.text or ""
        if name in result:
            raise ParseError(f"{where}: duplicate struct member {name[:40]!r}")
        result[name] = _decode_value(value_element, f"{where}.{name[:40]}")
    return result


@dataclass(frozen=True)
class MethodResponse:
    """A decoded ``methodResponse``: ``value`` for a success, else the fault's code and
    string (``fault_code`` is ``None`` exactly when the response is a success)."""

    value: Any = None
    fault_code: int | None = None
    fault_string: str = ""

    @property
    def ok(self) -> bool:
        return self.fault_code is None


def parse_method_response(
    body: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> MethodResponse:
    """Parse an XML-RPC ``methodResponse`` with the same hardened parser as requests.

    Why here: the recorder and the replay read answers of other servers (the legacy
    platform through ``klarna-gateway record``); they get the same protection against hostile
    XML and the same exact decimals as requests. Raises ``ParseError`` /
    ``InvalidRequestError`` like :func:`parse_method_call`.
    """
    return _parse_document(body, max_depth, _decode_method_response, "response")


def _decode_method_response(root: etree._Element) -> MethodResponse:
    if root.tag != "methodResponse":
        raise InvalidRequestError(
            f"root element must be <methodResponse>, not <{_tag_name(root)}>")
    children = _element_children(root, "methodResponse")
    if len(children) != 1 or children[0].tag not in ("params", "fault"):
        raise InvalidRequestError("<methodResponse> must contain one <params> or <fault>")
    if children[0].tag == "params":
        params = _element_children(children[0], "params")
        if len(params) != 1 or params[0].tag != "param":
            raise InvalidRequestError("<params> of a response must hold exactly one <param>")
        values = _element_children(params[0], "param")
        if len(values) != 1 or values[0].tag != "value":
            raise InvalidRequestError("<param> must contain exactly one <value>")
        return MethodResponse(value=_decode_value(values[0], "result"))
    values = _element_children(children[0], "fault")
    if len(values) != 1 or values[0].tag != "value":
        raise InvalidRequestError("<fault> must contain exactly one <value>")
    fault = _decode_value(values[0], "fault")
    code = fault.get("faultCode") if isinstance(fault, dict) else None
    if isinstance(code, str) and _INT_RE.fullmatch(code.strip()):
        code = int(code)  # some servers send the code as a <string>
    if not isinstance(code, int) or isinstance(code, bool):
        raise InvalidRequestError("<fault> must carry an integer faultCode")
    text = fault.get("faultString", "")
    return MethodResponse(fault_code=code, fault_string=text if isinstance(text, str) else
                          str(text))


def replace_params(body: bytes, values: dict[int, str]) -> bytes:
    """The ``methodCall`` ``body`` with the scalar top-level parameters ``values`` names
    (position → new text) replaced, everything else as it was.

    Why not re-encode the decoded call: a replay must send what the client sent, doubles
    spelled as PHP spelled them, element types and strings unchanged; only the numbers it
    maps and the digest it re-signs differ. The document keeps its declared encoding.
    Raises ``ParseError`` for a body :func:`parse_method_call` would refuse, and
    ``ValueError`` for a position that is not a scalar parameter.
    """
    root = _parse_xml(body)
    params_elements = [c for c in root if c.tag == "params"]
    params = [c for c in params_elements[0] if c.tag == "param"] if params_elements else []
    for index, text in values.items():
        if not 0 <= index < len(params):
            raise ValueError(f"no parameter {index}")
        value = next((c for c in params[index] if c.tag == "value"), None)
        if value is None:
            raise ValueError(f"parameter {index} has no <value>")
        typed = [c for c in value if isinstance(c.tag, str)]
        if not typed:
            value.text = text
        elif len(typed) == 1 and typed[0].tag in _SCALAR_TAGS and not len(typed[0]):
            typed[0].text = text
        else:
            raise ValueError(f"parameter {index} is not a scalar")
    encoding = root.getroottree().docinfo.encoding or "UTF-8"
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding=encoding)
