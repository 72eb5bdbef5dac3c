"""The examples in examples/python run to the end on both backends and say what they did."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import busbar
from conftest import REPO, rabbitmq_settings
from nats_server import NatsServer


def run_example(
    backend: str, request: pytest.FixtureRequest, *args: str, server: NatsServer | None = None
) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUSBAR_")}
    env["BUSBAR_BACKEND"] = backend
    if backend == "nats":
        env["BUSBAR_NATS_URL"] = (server or request.getfixturevalue("nats_server")).url
    if backend == "rabbitmq":
        env.update({f"BUSBAR_{k.upper()}": v for k, v in rabbitmq_settings().items()})
    done = subprocess.run(
        [sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


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


async def test_durable_calls_raise_unsupported_on_rabbitmq() -> None:
    bus = await busbar.connect(**rabbitmq_settings())
    try:
        with pytest.raises(busbar.UnsupportedError) as e:
            await bus.declare_stream("ORDERS", ["orders.>"])
        assert e.value.code == "unsupported"
        assert "rabbitmq" in str(e.value) and "durable" in str(e.value)
        with pytest.raises(busbar.UnsupportedError):
            await bus.publish_durable("orders.created", b"x")
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
