"""The Kafka backend from Python, on a private tansu broker: chosen by configuration
alone, the same calls as on every backend, `timeout` where Kafka cannot tell that nobody
subscribes, `UnsupportedError` for durable streams (docs/design.md §4, §5, §7)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from tansu_server import Tansu
from test_bus import take

import busbar


@pytest.fixture
async def bus(tansu: Tansu) -> AsyncIterator[busbar.Bus]:
    b = await busbar.connect(backend="kafka", kafka_brokers=tansu.brokers)
    try:
        yield b
    finally:
        await b.close()


async def test_wildcards_fan_out_in_order(bus: busbar.Bus) -> None:
    assert bus.backend == "kafka"
    every = await bus.subscribe("orders.>")
    eu = await bus.subscribe("orders.eu.*")
    for subject in ["orders.eu.created", "orders.us.created", "orders.eu.paid"]:
        await bus.publish(subject, {"subject": subject})
    await bus.flush()
    assert [m.subject for m in await take(every, 3, timeout=10)] == [
        "orders.eu.created",
        "orders.us.created",
        "orders.eu.paid",
    ]
    assert [m.subject for m in await take(eu, 2, timeout=10)] == [
        "orders.eu.created",
        "orders.eu.paid",
    ]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(eu.__anext__(), 0.3)


async def test_queue_group_delivers_each_message_once(tansu: Tansu) -> None:
    bus = await busbar.connect(
        backend="kafka",
        kafka_brokers=tansu.brokers,
        kafka_topic="py-queue",
        kafka_partition_by="subject",
    )
    try:
        a = await bus.queue_subscribe("jobs.*", "workers")
        b = await bus.queue_subscribe("jobs.*", "workers")
        for n in range(40):
            await bus.publish(f"jobs.j{n}", str(n))
        await bus.flush()
        seen: list[str] = []
        deadline = asyncio.get_running_loop().time() + 10
        while len(seen) < 40 and asyncio.get_running_loop().time() < deadline:
            for sub in (a, b):
                try:
                    msg = await asyncio.wait_for(sub.__anext__(), 0.05)
                    seen.append(msg.data.decode())
                except asyncio.TimeoutError:
                    pass
        assert sorted(seen, key=int) == [str(n) for n in range(40)]
    finally:
        await bus.close()


async def test_request_reply_and_a_timeout_where_nobody_answers(bus: busbar.Bus) -> None:
    responder = await bus.subscribe("math.double")

    async def serve() -> None:
        async for req in responder:
            await req.respond(str(2 * int(req.data)))

    server = asyncio.ensure_future(serve())
    try:
        reply = await bus.request("math.double", "21", timeout=5)
        assert reply.data == b"42" and reply.correlation_id is not None
        # Kafka cannot tell that nobody reads a subject: timeout, not no_responders.
        with pytest.raises(busbar.TimeoutError) as late:
            await bus.request("nobody.home", b"?", timeout=0.3)
        assert late.value.code == "timeout" and "nobody.home" in str(late.value)
    finally:
        server.cancel()


async def test_durable_streams_are_unsupported_and_say_so(bus: busbar.Bus) -> None:
    with pytest.raises(busbar.UnsupportedError) as refused:
        await bus.declare_stream("ORDERS", ["orders.>"])
    assert refused.value.code == "unsupported"
    assert "declare_stream" in str(refused.value) and "kafka" in str(refused.value)
    with pytest.raises(busbar.UnsupportedError):
        await bus.publish_durable("orders.x", b"1")


async def test_chosen_by_the_environment_alone(tansu: Tansu) -> None:
    os.environ.update(BUSBAR_BACKEND="kafka", BUSBAR_KAFKA_BROKERS=tansu.brokers)
    try:
        bus = await busbar.connect()
        assert bus.backend == "kafka"
        sub = await bus.subscribe("env.check")
        await bus.publish("env.check", "ok")
        assert (await take(sub, 1, timeout=10))[0].data == b"ok"
        await bus.close()
    finally:
        del os.environ["BUSBAR_BACKEND"], os.environ["BUSBAR_KAFKA_BROKERS"]


async def test_bad_kafka_settings_are_invalid_argument() -> None:
    with pytest.raises(busbar.InvalidArgumentError, match="kafka_brokers"):
        await busbar.connect(backend="kafka", kafka_brokers="no-port")
    with pytest.raises(busbar.InvalidArgumentError, match="kafka_partition_by"):
        await busbar.connect(backend="kafka", kafka_partition_by="random")
    with pytest.raises(TypeError, match="kafka_topic"):
        await busbar.connect(backend="kafka", kafka_topic=5)
