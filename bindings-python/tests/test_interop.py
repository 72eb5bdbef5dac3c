"""Interop with a plain NATS client (nats-py) through a private nats-server: what busbar
publishes arrives intact with its CloudEvents `ce-` headers, and requests cross both ways."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import nats
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from nats.aio.client import Client
from nats.aio.msg import Msg

import busbar
from nats_server import NatsServer, flush_nats_py


@pytest.fixture
async def plain(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture
async def nbus(nats_server: NatsServer) -> AsyncIterator[busbar.Bus]:
    bus = await busbar.connect(backend="nats", nats_url=nats_server.url, source="svc-orders")
    try:
        yield bus
    finally:
        await bus.close()


async def test_nats_py_receives_payload_and_ce_headers(plain: Client, nbus: busbar.Bus) -> None:
    sub = await plain.subscribe("interop.orders.*")
    await flush_nats_py(plain)
    await nbus.publish("interop.orders.created", {"qty": 3}, headers={"tenant": "st-marys"})
    await nbus.publish("interop.orders.raw", b"\x00\x01binary\xff")
    await nbus.flush()
    first = await sub.next_msg(timeout=2)
    second = await sub.next_msg(timeout=2)
    assert first.subject == "interop.orders.created"
    assert json.loads(first.data) == {"qty": 3}
    h = first.headers or {}
    assert h["ce-specversion"] == "1.0"
    assert h["ce-source"] == "svc-orders"
    assert h["ce-type"] == "busbar.event"
    assert "ce-subject" not in h, "the NATS subject is the subject"
    assert "Nats-Msg-Id" not in h, "only a durable publish carries JetStream's dedupe id"
    assert h["content-type"] == "application/json"
    assert h["tenant"] == "st-marys"
    assert len(h["ce-id"]) == 36
    assert "ce-time" in h
    assert second.data == b"\x00\x01binary\xff"
    assert (second.headers or {})["ce-id"] != h["ce-id"]


async def test_the_cloudevents_sdk_reads_what_busbar_puts_on_nats(
    plain: Client, nbus: busbar.Bus
) -> None:
    """The CloudEvents Python SDK reads a message captured from the wire as an event:
    binary content mode, the `ce-` headers and `content-type` as its HTTP binding has them."""
    sub = await plain.subscribe("interop.ce.*")
    await flush_nats_py(plain)
    await nbus.publish(
        "interop.ce.created",
        {"qty": 3},
        event_type="com.example.created",
        correlation_id="corr-1",
        headers={"tenant": "st-marys"},
    )
    await nbus.flush()
    msg = await sub.next_msg(timeout=2)
    event = from_http_event(HTTPMessage(headers=dict(msg.headers or {}), body=msg.data))
    assert event.get_specversion() == "1.0"
    assert len(event.get_id()) == 36
    assert event.get_source() == "svc-orders"
    assert event.get_type() == "com.example.created"
    assert event.get_datacontenttype() == "application/json"
    assert event.get_extension("correlationid") == "corr-1"
    assert event.get_data() == {"qty": 3}
    sent = event.get_time()
    assert sent is not None and abs(sent.timestamp() - time.time()) < 60


async def test_busbar_reads_plain_nats_messages(plain: Client, nbus: busbar.Bus) -> None:
    sub = await nbus.subscribe("interop.plain")
    await nbus.flush()
    await plain.publish("interop.plain", b"no headers at all")
    await plain.publish("interop.plain", b"with one", headers={"x-team": "billing"})
    await flush_nats_py(plain)
    got = []
    for _ in range(2):
        got.append(await asyncio.wait_for(sub.__anext__(), 2))
    assert [m.data for m in got] == [b"no headers at all", b"with one"]
    assert got[1].headers == {"x-team": "billing"}
    assert all(len(m.id) == 36 for m in got), "generated ids for plain messages"


async def test_nats_py_request_is_answered_by_a_busbar_responder(
    plain: Client, nbus: busbar.Bus
) -> None:
    responder = await nbus.subscribe("interop.time")
    await nbus.flush()

    async def serve() -> None:
        async for req in responder:
            await req.respond(b"tea time for " + req.data)

    server = asyncio.ensure_future(serve())
    try:
        reply = await plain.request("interop.time", b"nats-py", timeout=2)
        assert reply.data == b"tea time for nats-py"
        assert (reply.headers or {}).get("ce-correlationid"), "the reply carries a correlation id"
    finally:
        server.cancel()


async def test_busbar_request_is_answered_by_a_nats_py_responder(
    plain: Client, nbus: busbar.Bus
) -> None:
    async def answer(msg: Msg) -> None:
        await msg.respond(b"plain answer to " + msg.data)

    await plain.subscribe("interop.plain-service", cb=answer)
    await flush_nats_py(plain)
    reply = await nbus.request("interop.plain-service", b"busbar", timeout=2)
    assert reply.data == b"plain answer to busbar"
