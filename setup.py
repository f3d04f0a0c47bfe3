"""Only the package list, which pyproject.toml cannot compute: the `server` packages plus the
top-level `migrations/` folders, installed as `server.migrations.<domain>` (the mapping is
pyproject's package-dir). Everything else about the build is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["server", "server.*"]),
        "server.migrations",
        *(f"server.migrations.{p}" for p in find_packages("migrations")),
    ]
)
