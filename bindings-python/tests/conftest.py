"""Fixtures: a private nats-server per test session (ephemeral loopback port, temporary
store, stopped by its PID), and a `bus` fixture that runs a test on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import busbar
from nats_server import NatsServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["memory", "nats"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def bus(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[busbar.Bus]:
    if backend == "nats":
        server: NatsServer = request.getfixturevalue("nats_server")
        b = await busbar.connect(backend="nats", nats_url=server.url)
    else:
        b = await busbar.connect()
    try:
        yield b
    finally:
        await b.close()
