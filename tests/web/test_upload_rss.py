"""A 1 GiB unauthenticated upload against a guarded listener in its own process.

The server runs in a subprocess so its resident memory can be read from
``/proc/<pid>/status`` before and after; the client streams the body from one reusable
64 KiB buffer and stops as soon as the answer arrives.
"""
from __future__ import annotations

import sys

import pytest

from tests.web import clients
from tests.waiting import wait_until
from tests.web.guarded_server import ServerProcess

GiB = 1 << 30

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc/<pid>/status")


def _head(length: int, token: bytes | None) -> bytes:
    auth = b"Authorization: Bearer " + token + b"\r\n" if token else b""
    return (b"POST /upload HTTP/1.1\r\nHost: test\r\n" + auth
            + b"Content-Type: application/octet-stream\r\n"
            + b"Content-Length: %d\r\n\r\n" % length)


def test_1gib_unauthenticated_upload_is_refused_before_the_body() -> None:
    with ServerProcess(["--max-body", str(1 << 20), "--linger", "1"]) as server:
        # Warm up every code path the measured request will use (admit, refuse, reply).
        assert server.request("POST", "/x", b"warm")[0] == 200
        assert server.request("POST", "/x", b"warm", auth=False)[0] == 401
        before = server.memory_kib()

        upload = clients.stream_upload(server.port, _head(GiB, None), GiB, limit=60.0)

        after = server.memory_kib()
        growth_kib = after["VmRSS"] - before["VmRSS"]
        peak_growth_kib = after["VmHWM"] - before["VmRSS"]
        print(f"\n1 GiB unauthenticated upload: 401 after "
              f"{(upload.answered_after or 0) * 1000:.1f} ms, {upload.body_bytes_sent} body "
              f"bytes sent by then; server RSS {before['VmRSS']} -> {after['VmRSS']} KiB "
              f"(growth {growth_kib} KiB, peak growth {peak_growth_kib} KiB)")
        assert upload.answered_after is not None and upload.answered_after < 1.0
        assert upload.response.status == 401
        assert upload.response.header(b"www-authenticate") == b'Bearer realm="test"'
        assert upload.body_bytes_sent < 64 << 20  # only what the socket buffers took
        assert peak_growth_kib < 8 * 1024
        wait_until(lambda: server.stats()["open_connections"] == 1,  # /stats' own
                   "the upload's connection closed", timeout=5)
        stats = server.stats()
        assert stats["body_bytes_buffered"] == len(b"warm")
        assert stats["refused_requests"] == {"UNAUTHORIZED": 2}


def test_1gib_authorized_upload_over_the_limit_is_refused_413() -> None:
    with ServerProcess(["--max-body", str(1 << 20), "--linger", "1"]) as server:
        upload = clients.stream_upload(server.port, _head(GiB, b"secret"), GiB, limit=60.0)
        assert upload.response.status == 413
        assert upload.answered_after is not None and upload.answered_after < 1.0
        assert server.stats()["body_bytes_buffered"] == 0
