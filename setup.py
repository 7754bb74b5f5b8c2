"""klarna-gateway: legacy Klarna XML-RPC in front of the Order Management REST API."""
from setuptools import find_packages, setup

setup(
    name="klarna-gateway",
    version="0.1.0",
    description="Serve Klarna's legacy XML-RPC order-management calls from the Order Management REST API",
    python_requires=">=3.11",
    packages=find_packages(include=["gateway", "gateway.*"]),
    package_data={
        "gateway.store": ["alembic.ini", "migrations/*.py", "migrations/versions/*.py"],
        "gateway": ["data/*.csv", "data/*.toml"],
    },
    install_requires=[
        "Twisted>=24.3",
        "treq>=24.9",
        "SQLAlchemy>=2.0",
        "alembic>=1.13",
        "lxml>=5.0",
        "psycopg[binary]>=3.1",
        "tzdata",
        "prometheus_client>=0.20",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "hypothesis>=6.100",
            "freezegun>=1.4",
            "openapi-core>=0.19",
            "PyYAML>=6",
            "jsonschema>=4.20",
            "Klarna_API==3.1.0",
            "klarnacheckout==3.0.1",
            # the console's browser tests drive Debian's Chromium (never `playwright install`)
            "playwright>=1.40",
        ],
    },
    entry_points={
        "console_scripts": ["klarna-gateway = gateway.cli:main"],
        # the fixtures for other projects' suites (docs/pytest-plugin.md)
        "pytest11": ["klarna_gateway = gateway.testing.pytest_plugin"],
    },
)
