"""Encoding legacy XML-RPC replies: exactly what v2 sent (ISO-8859-1, declared; one value).

Hand-written rather than ``xmlrpc.client.dumps`` for wire fidelity and safety: only values
XML-RPC can carry are accepted (docs/legacy-protocol.md#replies), and anything else raises
``TypeError`` so a translator bug becomes an internal-error fault instead of leaking Python text.
"""
from __future__ import annotations

import base64
import math
import re
import xmlrpc.client
from typing import Any, Final

__all__ = ["encode_fault", "encode_response"]

_XML_ILLEGAL_RE: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

_XML_DECLARATION: Final = b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_MAX_ENCODE_DEPTH: Final = 64


def encode_response(value: Any) -> bytes:
    """Encode a successful ``methodResponse`` carrying exactly one value.

    Only XML-RPC-safe values are accepted (docs/legacy-protocol.md#replies): ``str``, ``bool``,
    32-bit ``int``, finite ``float``, ``list``/``tuple``, ``dict`` with ``str`` keys, ``bytes``/
    ``xmlrpc.client.Binary`` and ``xmlrpc.client.DateTime``. Anything else (``None``,
    ``Decimal``, NaN, a str with characters XML cannot carry, a cycle) raises ``TypeError``
    so that a translator bug becomes an internal-error fault instead of leaking Python text.

    Returns:
        ISO-8859-1 bytes with an XML declaration; characters outside Latin-1 are numeric
        character references.
    """
    parts: list[str] = ["<methodResponse><params><param>"]
    _encode_value(value, parts, 0)
    parts.append("</param></params></methodResponse>\n")
    return _XML_DECLARATION + "".join(parts).encode("latin-1")


def encode_fault(code: int, message: str) -> bytes:
    """Encode a standard XML-RPC ``<fault>`` with an ``<int>`` faultCode.

    This is the last-resort path, so it never refuses a message: characters XML cannot carry
    are replaced by ``?`` and a non-str message is stringified. ``code`` must be an int
    (a :class:`~gateway.errors.FaultCode` is one).
    """
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError("fault code must be an int")
    if not _INT32_MIN <= int(code) <= _INT32_MAX:
        raise TypeError("fault code must fit in 32 bits")
    text = message if isinstance(message, str) else str(message)
    text = _XML_ILLEGAL_RE.sub("?", text)
    body = (
        "<methodResponse><fault><value><struct>"
        f"<member><name>faultCode</name><value><int>{int(code)}</int></value></member>"
        f"<member><name>faultString</name><value><string>{_escape(text)}</string></value>"
        "</member></struct></value></fault></methodResponse>\n"
    )
    return _XML_DECLARATION + body.encode("latin-1")


def _escape(text: str) -> str:
    """XML-escape and turn every non-Latin-1 character into a numeric character reference."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if text.isascii():
        return text
    return "".join(ch if ord(ch) < 256 else f"&#{ord(ch)};" for ch in text)


def _encode_string(text: str) -> str:
    if _XML_ILLEGAL_RE.search(text):
        raise TypeError("string contains characters XML cannot carry")
    # A bare CR would be normalised to LF by the client's XML parser; keep it exact.
    return _escape(text).replace("\r", "&#13;")


def _encode_value(value: Any, out: list[str], depth: int) -> None:
    if depth > _MAX_ENCODE_DEPTH:
        raise TypeError("value nested too deeply (cycle?)")
    out.append("<value>")
    if isinstance(value, bool):
        out.append(f"<boolean>{int(value)}</boolean>")
    elif isinstance(value, int):
        if not _INT32_MIN <= value <= _INT32_MAX:
            raise TypeError("int outside the 32-bit XML-RPC range")
        out.append(f"<int>{int(value)}</int>")
    elif isinstance(value, str):
        out.append(f"<string>{_encode_string(value)}</string>")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError("non-finite float is not XML-RPC-safe")
        out.append(f"<double>{value!r}</double>")
    elif isinstance(value, list | tuple):
        out.append("<array><data>")
        for item in value:
            _encode_value(item, out, depth + 1)
        out.append("</data></array>")
    elif isinstance(value, dict):
        out.append("<struct>")
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("struct keys must be str")
            out.append(f"<member><name>{_encode_string(key)}</name>")
            _encode_value(item, out, depth + 1)
            out.append("</member>")
        out.append("</struct>")
    elif isinstance(value, bytes | bytearray | xmlrpc.client.Binary):
        raw = bytes(value.data if isinstance(value, xmlrpc.client.Binary) else value)
        out.append(f"<base64>{base64.b64encode(raw).decode('ascii')}</base64>")
    elif isinstance(value, xmlrpc.client.DateTime):
        out.append(f"<dateTime.iso8601>{_encode_string(value.value)}</dateTime.iso8601>")
    else:
        raise TypeError(f"{type(value).__name__} is not XML-RPC-safe")
    out.append("</value>")
