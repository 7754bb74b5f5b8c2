from tests.sandbox_fixtures import sandbox  # noqa: F401
