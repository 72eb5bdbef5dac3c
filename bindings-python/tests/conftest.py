"""Fixtures: a private nats-server and a private tansu (Kafka) broker per test session
(ephemeral loopback ports, temporary stores, stopped by their PIDs), and a `bus` fixture
that runs a test on every backend (on RabbitMQ: the machine's broker,
BUSBAR_TEST_AMQP_URL, on a topic exchange of the test's own, auto-deleted when the bus
disconnects)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tansu_server import Tansu

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


@pytest.fixture(scope="session")
def tansu() -> Iterator[Tansu]:
    """A private Kafka-protocol broker for the Kafka tests (each uses topics of its own)."""
    broker = Tansu()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(params=["memory", "nats"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def rabbitmq_settings() -> dict[str, str]:
    """connect() keywords for a RabbitMQ bus on a fresh exchange of the test broker."""
    return {
        "backend": "rabbitmq",
        "amqp_url": os.environ.get("BUSBAR_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        "amqp_exchange": f"busbar.test.{uuid.uuid4().hex}",
    }


def delete_journal(settings: dict[str, str]) -> None:
    """Deletes the durable journal of a RabbitMQ test exchange (a RabbitMQ stream, which
    outlives the buses that made it), through a plain AMQP client."""
    import pika  # type: ignore[import-untyped]

    conn = pika.BlockingConnection(pika.URLParameters(settings["amqp_url"]))
    try:
        conn.channel().queue_delete(f"{settings['amqp_exchange']}.journal")
    finally:
        conn.close()


@pytest.fixture(params=["memory", "nats", "rabbitmq"])
def any_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def bus(any_backend: str, request: pytest.FixtureRequest) -> AsyncIterator[busbar.Bus]:
    if any_backend == "nats":
        server: NatsServer = request.getfixturevalue("nats_server")
        b = await busbar.connect(backend="nats", nats_url=server.url)
    elif any_backend == "rabbitmq":
        b = await busbar.connect(**rabbitmq_settings())
    else:
        b = await busbar.connect()
    try:
        yield b
    finally:
        await b.close()
