"""The examples in examples/python run to the end on both backends and say what they did."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import busbar
from conftest import REPO, delete_journal, rabbitmq_settings
from nats_server import NatsServer


def run_example(
    backend: str,
    request: pytest.FixtureRequest,
    *args: str,
    server: NatsServer | None = None,
    settings: dict[str, str] | None = None,
) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUSBAR_")}
    env["BUSBAR_BACKEND"] = backend
    if backend == "nats":
        env["BUSBAR_NATS_URL"] = (server or request.getfixturevalue("nats_server")).url
    if backend == "rabbitmq":
        settings = settings or rabbitmq_settings()
        env.update({f"BUSBAR_{k.upper()}": v for k, v in settings.items()})
    done = subprocess.run(
        [sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_tour(backend: str, request: pytest.FixtureRequest) -> None:
    out = run_example(backend, request, "examples/python/tour.py")
    assert "read order-7 com.example.order.created application/json corr-1" in out
    assert "internal tour=1 {'tenant': 'st-marys'} keyid=None" in out
    assert "served: HELLO" in out and "answered 1 request(s)" in out
    assert "clerk sees {'ssn': '*******6789'}; policy counters: 1 masked" in out


def test_quickstart(backend: str, request: pytest.FixtureRequest) -> None:
    out = run_example(backend, request, "examples/python/quickstart.py")
    assert f"connected to the {backend} bus" in out
    assert (
        "'orders.>'    got ['orders.eu.created', 'orders.us.created', 'orders.eu.paid.late']" in out
    )
    assert "'orders.eu.*' got ['orders.eu.created']" in out
    assert "four jobs, each done once" in out
    assert "reply: it is tea time (you asked 'what time is it?')" in out
    assert "[no_responders]" in out and "[invalid_subject]" in out
    assert "1 request(s) answered" in out


def test_service_demo(backend: str, request: pytest.FixtureRequest) -> None:
    out = run_example(backend, request, "examples/python/service.py", "--demo")
    assert "calc.double 21 -> 42" in out
    assert "calc.double -1 -> error 422: only numbers from 0" in out
    assert "discovered calc 1.0.0" in out and "2 requests, 1 errors" in out


def test_responder_demo(backend: str, request: pytest.FixtureRequest) -> None:
    out = run_example(backend, request, "examples/python/responder.py", "--demo")
    assert "'greeting': 'hello, ada'" in out and "'greeting': 'hello, linus'" in out
    assert "served 3 requests" in out


def test_durable(backend: str, request: pytest.FixtureRequest) -> None:
    # A fresh server on NATS: the example's stream and consumers persist, and a stream over
    # orders.> would answer the other tests' requests on those subjects.
    server = NatsServer() if backend == "nats" else None
    try:
        out = run_example(backend, request, "examples/python/durable.py", server=server)
    finally:
        if server is not None:
            server.close()
    assert "1. stored in ORDERS at sequence 1\n" in out
    assert "1. stored in ORDERS at sequence 1 (duplicate: stored once)" in out
    assert "(sequence 1, attempt 1)\n            nacked" in out
    assert "(sequence 1, attempt 2)\n            acked; acking twice: [invalid_argument]" in out
    assert "terminated: to the dead-letter stream" in out
    assert 'on dlq.orders.created, reason "terminated: unparsable order"' in out
    assert "4. ORDERS holds 2 messages, sequences 1 to 2" in out


def test_quickstart_and_responder_run_on_rabbitmq_by_configuration(
    request: pytest.FixtureRequest,
) -> None:
    out = run_example("rabbitmq", request, "examples/python/quickstart.py")
    assert "connected to the rabbitmq bus" in out
    assert "four jobs, each done once" in out
    assert "[no_responders]" in out and "1 request(s) answered" in out
    out = run_example("rabbitmq", request, "examples/python/responder.py", "--demo")
    assert "served 3 requests" in out


def test_durable_example_runs_on_rabbitmq(request: pytest.FixtureRequest) -> None:
    settings = rabbitmq_settings()
    try:
        out = run_example("rabbitmq", request, "examples/python/durable.py", settings=settings)
    finally:
        delete_journal(settings)
    assert "1. stored in ORDERS at sequence 1\n" in out
    assert "1. stored in ORDERS at sequence 1 (duplicate: stored once)" in out
    assert "(sequence 1, attempt 2)\n            acked; acking twice: [invalid_argument]" in out
    assert 'on dlq.orders.created, reason "terminated: unparsable order"' in out
    assert "4. ORDERS holds 2 messages, sequences 1 to 2" in out


async def test_rabbitmq_lists_and_deletes_durable_streams() -> None:
    settings = rabbitmq_settings()
    bus = await busbar.connect(**settings)
    try:
        await bus.declare_stream("ORDERS", ["orders.>"])
        await bus.publish_durable("orders.created", b"one")
        sub = await bus.durable_subscribe("ORDERS", "billing")
        async for m in sub:
            await m.ack()
            break
        assert [s.name for s in await bus.list_streams()] == ["DLQ_DLQ", "ORDERS"]
        assert [c.name for c in await bus.list_consumers("ORDERS")] == ["billing"]
        info = await bus.consumer_info("ORDERS", "billing")
        assert (info.pending, info.ack_pending, info.delivered_sequence) == (0, 0, 1)
        await bus.delete_consumer("ORDERS", "billing")
        with pytest.raises(busbar.InvalidArgumentError):
            await bus.consumer_info("ORDERS", "billing")
        await bus.delete_stream("ORDERS")
        assert [s.name for s in await bus.list_streams()] == ["DLQ_DLQ"]
        with pytest.raises(busbar.InvalidArgumentError):
            await bus.delete_stream("ORDERS")
    finally:
        await bus.close()
        delete_journal(settings)


async def test_rabbitmq_refuses_what_amqp_cannot_express() -> None:
    bus = await busbar.connect(**rabbitmq_settings())
    try:
        with pytest.raises(busbar.InvalidSubject, match="AMQP"):
            await bus.subscribe("orders.#")
        with pytest.raises(busbar.InvalidSubject, match="255 bytes"):
            await bus.publish("p" * 256, b"x")
        sub = await bus.subscribe("orders.*")
        await bus.publish("orders.created", b"still works")
        async for m in sub:
            assert m.data == b"still works"
            break
    finally:
        await bus.close()


def test_observability_producer_demo(backend: str, request: pytest.FixtureRequest) -> None:
    out = run_example(backend, request, "examples/observability/producer.py", "--demo")
    assert "busbar_published_total 10" in out
