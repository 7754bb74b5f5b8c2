"""Masking digests out of stored requests, and re-signing them for a replay.

The PHP 2.4.0 wire captures (eid 1234, secret ``sandbox-secret``) are real SDK bodies with
real digests: masked, every other byte stays as it was and the digest is gone; re-signed
in the Python SDK's dialect with the same secret, the gateway accepts them again.
"""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.calls import REGISTRY, digest_parts, verify_digest
from gateway.replay.compare import NumberMap, mapped_values
from gateway.replay.masking import (
    HASH_BY_LENGTH, digest_hash, hash_of_placeholder, mask_generic, mask_request, placeholder,
)
from gateway.replay.resign import ResignError, resign, sign
from gateway.wire.parse import parse_method_call, replace_params

CAPTURES = sorted((Path(__file__).resolve().parents[1] / "data" / "captures" / "php-2.4.0")
                  .glob("*.xml"))
SECRET = b"sandbox-secret"


def _xml(method: str, *values: str) -> bytes:
    params = "".join(f"<param><value>{v}</value></param>" for v in values)
    return (b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<methodCall><methodName>'
            + method.encode() + b"</methodName><params>" + params.encode("latin-1")
            + b"</params></methodCall>")


def _py_digest(*parts: object, secret: str = "sandbox-secret", hash_name: str = "sha512"
               ) -> str:
    """What the Python SDK sends: ``b64(HASH(":".join(str(x))))``."""
    text = ":".join(str(p) for p in (*parts, secret))
    return base64.b64encode(hashlib.new(hash_name, text.encode("latin-1")).digest()).decode()


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_captures_are_masked_at_the_declared_position_only(capture: Path) -> None:
    body = capture.read_bytes()
    method, params = parse_method_call(body)
    lookup = REGISTRY.lookup(method)
    assert lookup is not None and lookup.digest_at is not None
    digest = params[lookup.digest_at]
    masked = mask_request(body)
    assert masked.method == method and masked.eid == 1234
    assert masked.digest_at == lookup.digest_at and masked.masked == 1
    assert masked.hash_name == HASH_BY_LENGTH[len(digest)]
    assert digest.encode() not in masked.body
    assert mask_generic(masked.body)[1] == 0
    # every other byte as it crossed the wire
    assert masked.body == body.replace(digest.encode(), placeholder(masked.hash_name).encode())
    _, again = parse_method_call(masked.body)
    assert hash_of_placeholder(again[lookup.digest_at]) == masked.hash_name
    assert [v for i, v in enumerate(again) if i != lookup.digest_at] == \
        [v for i, v in enumerate(params) if i != lookup.digest_at]


@pytest.mark.parametrize("capture", [c for c in CAPTURES
                                     if parse_method_call(c.read_bytes())[0]
                                     in REGISTRY.served], ids=lambda p: p.stem)
def test_masked_captures_resign_and_verify(capture: Path) -> None:
    """PHP 2.4 hashed them in its drop-falsy dialect; re-signed in the Python dialect the
    gateway accepts them (and not with another secret)."""
    masked = mask_request(capture.read_bytes())
    method, params = parse_method_call(masked.body)
    position, digest = resign(method, params, SECRET, masked.hash_name)
    assert position == masked.digest_at
    body = replace_params(masked.body, {position: digest})
    _, signed = parse_method_call(body)
    assert verify_digest(method, signed, SECRET)
    assert not verify_digest(method, signed, b"another-secret")


def test_resigned_digest_equals_the_python_sdk_digest() -> None:
    """extend_expiry_date hashes eid:rno; credit_part eid:invno:artno:qty (never filtered)."""
    params = ["4.1", "python:api:3.1.0", "8000000001", 1234, placeholder("sha512")]
    _, digest = resign("extend_expiry_date", params, SECRET, "sha512")
    assert digest == _py_digest(1234, "8000000001")
    artnos = [{"artno": "ART-1", "qty": 1}, {"artno": "ART-2", "qty": 0}]
    credit = ["4.1", "python:api:3.1.0", 1234, "9000000001", artnos, "CR-1",
              placeholder("sha512")]
    _, digest = resign("credit_part", credit, SECRET, "sha512")
    assert digest == _py_digest(1234, "9000000001", "ART-1", 1, "ART-2", 0)
    credit[6] = digest
    assert verify_digest("credit_part", credit, SECRET)


@pytest.mark.parametrize("hash_name", ["md5", "sha224", "sha256", "sha384", "sha512"])
def test_resign_keeps_the_recorded_hash(hash_name: str) -> None:
    params = ["4.1", "python:api:3.1.0", 1234, "9000000001", placeholder(hash_name)]
    _, digest = resign("email_invoice", params, SECRET, hash_name)
    assert digest_hash(digest) == hash_name
    params[4] = digest
    assert verify_digest("email_invoice", params, SECRET)


def test_resign_refuses_what_it_cannot_sign() -> None:
    with pytest.raises(ResignError):
        resign("no_such_call", ["4.1", "x", 1234, "d"], SECRET, "sha512")
    with pytest.raises(ResignError):
        sign(digest_parts("email_invoice", ["4.1", "v", 1234, "9", "d"]), SECRET, "sha1")
    with pytest.raises(ResignError):  # a non-Latin-1 part: no SDK could have hashed it
        sign(digest_parts("email_invoice", ["4.1", "v", 1234, "9€", "d"]), SECRET, "sha512")


def test_mapped_number_then_resigned() -> None:
    """The number is mapped before the digest is rebuilt over it."""
    params = ["4.1", "python:api:3.1.0", 1234, placeholder("sha512"), "8000000001",
              {"artnos": [{"artno": "ART-1", "qty": 1}]}]
    numbers = NumberMap(rno={"8000000001": "8000000042"})
    values, ref = mapped_values("activate", params, numbers)
    assert ref is not None and ref.kind == "rno" and values == {4: "8000000042"}
    mapped = [values.get(i, v) for i, v in enumerate(params)]
    position, digest = resign("activate", mapped, SECRET, "sha512")
    mapped[position] = digest
    assert verify_digest("activate", mapped, SECRET)
    assert mapped[4] == "8000000042"


def test_unknown_method_masks_every_digest_shaped_value() -> None:
    d512 = _py_digest("x")
    d256 = _py_digest("y", hash_name="sha256")
    d_md5 = _py_digest("z", hash_name="md5")
    body = _xml("some_future_call", "<string>4.1</string>", f"<string>{d512}</string>",
                f" {d256} ", f"<string>{d_md5}</string>", "<string>short+/==</string>",
                "<string>" + "A" * 87 + "</string>")
    masked = mask_request(body)
    assert masked.method == "some_future_call" and masked.digest_at is None
    assert masked.masked == 3
    for d in (d512, d256, d_md5):
        assert d.encode() not in masked.body
    for name in ("sha512", "sha256", "md5"):
        assert placeholder(name).encode() in masked.body
    assert b"short+/==" in masked.body and b"A" * 87 in masked.body


def test_bytes_that_are_not_xmlrpc_are_masked_by_shape() -> None:
    d = _py_digest("x")
    body = f"<oops><value>{d}</value>".encode()
    masked = mask_request(body)
    assert masked.method is None and masked.masked == 1 and d.encode() not in masked.body
    assert mask_request(b"").body == b"" and mask_request(None).body == b""


def test_a_digest_written_with_character_references_is_still_masked() -> None:
    """``+`` as ``&#43;``: the raw bytes do not contain the value; the parsed document
    is rewritten at the declared position instead."""
    d = _py_digest(1234, "9000000001")
    assert "+" in d and "/" in d  # so the references below really change the bytes
    written = d.replace("+", "&#43;").replace("/", "&#47;")
    body = _xml("email_invoice", "<string>4.1</string>", "<string>v</string>", "<int>1234</int>",
                "<string>9000000001</string>", f"<string>{written}</string>")
    masked = mask_request(body)
    assert written.encode() not in masked.body and d.encode() not in masked.body
    _, params = parse_method_call(masked.body)
    assert params[4] == placeholder("sha512") and params[3] == "9000000001"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255,
                                      blacklist_characters="<>&"), max_size=40))
def test_masking_never_touches_other_parameters(text: str) -> None:
    d = _py_digest(1234, "9000000001")
    body = _xml("email_invoice", "<string>4.1</string>", f"<string>{text}</string>",
                "<int>1234</int>", "<string>9000000001</string>", f"<string>{d}</string>")
    masked = mask_request(body)
    _, params = parse_method_call(masked.body)
    assert params[1] == text and params[4] == placeholder("sha512")
