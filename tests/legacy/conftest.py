"""Fixtures for the XML-RPC edge tests.

Helpers live in ``legacy_sdk_capture`` (a unique module name: every ``conftest`` of the test
tree is imported under the same name, so tests must not ``import conftest``).
"""
from __future__ import annotations

import pytest
from legacy_sdk_capture import CapturedSdk, make_sdk


@pytest.fixture
def sdk() -> CapturedSdk:
    """The PY SDK for eid 1234 / secret ``s3cr3t`` with a capturing transport."""
    return make_sdk()
