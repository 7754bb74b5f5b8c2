"""Sandbox tests use the shared ``sandbox`` fixture (the suite-wide conftest imports it too)."""
from tests.sandbox_fixtures import sandbox  # noqa: F401
