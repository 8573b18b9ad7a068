"""Fixtures of the fault tests: fleets of real processes, and private Redis and Postgres
servers that a test may stop (the machine's shared ones are never stopped)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.e2e.fleet import Fleet
from tests.e2e.services import PrivatePostgres, PrivateRedis, postgres_server_missing, redis_server_missing


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.failed:
        # A fleet's processes log to files: show them with the failure.
        fleets: list[Fleet] = getattr(item, "fleets", [])
        for fleet in fleets:
            report.sections.append(("fleet logs", fleet.logs()))
    return report


@pytest.fixture
def make_fleet(
    request: pytest.FixtureRequest, transactional_db: None, tmp_path: Path, demo_models: Path
) -> Iterator[Callable[..., Fleet]]:
    """Fleets on the given database and broker, stopped at the end of the test.

    After the test database is set up and before it is emptied: a worker still running
    after the flush would register its server again, and every later test would route
    its jobs to that server's queue, which nobody consumes."""
    fleets: list[Fleet] = []
    request.node.fleets = fleets

    def make(*, database_url: str, broker_url: str, **overrides: str) -> Fleet:
        fleet = Fleet(
            directory=tmp_path / f"fleet-{len(fleets)}",
            database_url=database_url,
            broker_url=broker_url,
            MODEL_IMAGE_CREATION=str(demo_models / "tiny-sd"),
            # API tokens are hashed with it: every process shares the test's own.
            SECRET_KEY=settings.SECRET_KEY,
            **overrides,
        )
        fleet.directory.mkdir()
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    missing = redis_server_missing()
    if missing:
        pytest.skip(missing)
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    missing = postgres_server_missing()
    if missing:
        pytest.skip(missing)
    postgres = PrivatePostgres()
    try:
        postgres.create()
        yield postgres
    finally:
        postgres.destroy()
