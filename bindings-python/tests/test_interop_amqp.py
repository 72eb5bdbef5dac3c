"""Interop with a plain AMQP 0-9-1 client (pika) on the test broker: what busbar publishes
arrives with its CloudEvents attributes in the documented AMQP properties and headers
(docs/guide/rabbitmq.md), busbar reads what pika publishes, and requests cross both ways.
Each test runs on a topic exchange of its own, auto-deleted when its clients leave."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pika  # type: ignore[import-untyped]
import pytest

import busbar
from conftest import rabbitmq_settings

WAIT = 5.0


class Plain:
    """A blocking pika connection, used from one worker thread at a time."""

    def __init__(self, url: str, exchange: str) -> None:
        self.exchange = exchange
        self.conn = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.conn.channel()
        # busbar declared it (topic, durable, auto-deleted): only check it is there.
        self.channel.exchange_declare(exchange, passive=True)

    def bind(self, key: str) -> str:
        """A fresh exclusive queue bound to the exchange under `key`."""
        queue = self.channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self.channel.queue_bind(queue, self.exchange, routing_key=key)
        return str(queue)

    def get(self, queue: str) -> tuple[Any, Any, bytes]:
        """The next message of `queue` (method, properties, body), waiting up to WAIT."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            method, props, body = self.channel.basic_get(queue, auto_ack=True)
            if method is not None:
                return method, props, body
            self.conn.sleep(0.02)
        raise AssertionError(f"nothing arrived on {queue} within {WAIT} s")

    def send(self, key: str, body: bytes, props: Any) -> None:
        self.channel.basic_publish(self.exchange, key, body, props, mandatory=True)

    def close(self) -> None:
        self.conn.close()


def text(value: Any) -> str:
    """A header value as pika decoded it (str, or bytes when it was not UTF-8)."""
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[busbar.Bus, Plain]]:
    settings = rabbitmq_settings()
    bus = await busbar.connect(**settings, source="svc-orders")
    plain = await asyncio.to_thread(Plain, settings["amqp_url"], settings["amqp_exchange"])
    try:
        yield bus, plain
    finally:
        await asyncio.to_thread(plain.close)
        await bus.close()


async def test_pika_reads_busbar_envelope(pair: tuple[busbar.Bus, Plain]) -> None:
    bus, plain = pair
    queue = await asyncio.to_thread(plain.bind, "interop.orders.*")
    await bus.publish(
        "interop.orders.created",
        {"qty": 3},
        headers={"tenant": "st-marys"},
        event_type="com.example.order.created",
    )
    await bus.publish("interop.orders.raw", b"\x00\x01binary\xff")
    await bus.flush()
    method, props, body = await asyncio.to_thread(plain.get, queue)
    assert method.routing_key == "interop.orders.created"
    assert json.loads(body) == {"qty": 3}
    h = {k: text(v) for k, v in (props.headers or {}).items()}
    assert h["cloudEvents:specversion"] == "1.0"
    assert h["cloudEvents:source"] == "svc-orders"
    assert h["cloudEvents:type"] == "com.example.order.created"
    assert h["cloudEvents:subject"] == "interop.orders.created"
    assert h["cloudEvents:time"].endswith("Z")
    assert h["tenant"] == "st-marys"
    assert len(h["cloudEvents:id"]) == 36
    assert props.message_id == h["cloudEvents:id"]
    assert props.content_type == "application/json"
    method, props, body = await asyncio.to_thread(plain.get, queue)
    assert method.routing_key == "interop.orders.raw"
    assert body == b"\x00\x01binary\xff"
    assert text(props.headers["cloudEvents:id"]) != h["cloudEvents:id"]


async def test_busbar_reads_plain_pika_messages(pair: tuple[busbar.Bus, Plain]) -> None:
    bus, plain = pair
    sub = await bus.subscribe("interop.plain")
    await bus.flush()
    await asyncio.to_thread(
        plain.send, "interop.plain", b"no headers at all", pika.BasicProperties()
    )
    props = pika.BasicProperties(
        headers={"x-team": "billing"}, message_id="pika-7", content_type="text/plain"
    )
    await asyncio.to_thread(plain.send, "interop.plain", b"with one", props)
    got = [await asyncio.wait_for(sub.__anext__(), WAIT) for _ in range(2)]
    assert [m.data for m in got] == [b"no headers at all", b"with one"]
    assert len(got[0].id) == 36, "a generated id for a message without one"
    assert got[0].source == "amqp"
    assert got[1].id == "pika-7", "the message-id property is the id"
    assert got[1].headers == {"x-team": "billing"}
    assert got[1].content_type == "text/plain"


async def test_pika_request_is_answered_by_a_busbar_responder(
    pair: tuple[busbar.Bus, Plain],
) -> None:
    bus, plain = pair
    responder = await bus.subscribe("interop.time")

    async def serve() -> None:
        async for req in responder:
            await req.respond(b"tea time for " + req.data)

    server = asyncio.ensure_future(serve())
    try:
        await bus.flush()
        reply_key = f"plain.reply.{uuid.uuid4().hex}"
        replies = await asyncio.to_thread(plain.bind, reply_key)
        props = pika.BasicProperties(reply_to=reply_key, correlation_id="pika-42")
        await asyncio.to_thread(plain.send, "interop.time", b"pika", props)
        method, props, body = await asyncio.to_thread(plain.get, replies)
        assert body == b"tea time for pika"
        assert method.routing_key == reply_key
        assert props.correlation_id == "pika-42"
        assert text(props.headers["cloudEvents:correlationid"]) == "pika-42"
    finally:
        server.cancel()


async def test_busbar_request_is_answered_by_a_pika_responder(
    pair: tuple[busbar.Bus, Plain],
) -> None:
    bus, plain = pair
    requests = await asyncio.to_thread(plain.bind, "interop.plain-service")

    def answer() -> None:
        _, props, body = plain.get(requests)
        reply = pika.BasicProperties(correlation_id=props.correlation_id)
        plain.channel.basic_publish(
            plain.exchange, props.reply_to, b"plain answer to " + body, reply
        )

    responder = asyncio.ensure_future(asyncio.to_thread(answer))
    reply = await bus.request("interop.plain-service", b"busbar", timeout=WAIT)
    await responder
    assert reply.data == b"plain answer to busbar"
    assert reply.source == "amqp"
