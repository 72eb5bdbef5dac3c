"""The whole API in Python's idiom (docs/design.md §9): every attribute read back, request
ids and headers, serve, connection events, durable verbs, and the habits of nats-py users
(callback subscriptions, create_task, drain, a URL to connect)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

import busbar
from nats_server import NatsServer

ALL = {
    "id": "evt-1",
    "event_type": "com.example.created",
    "content_type": "text/plain; charset=utf-8",
    "correlation_id": "corr-9",
    "classification": "internal,pii",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "busbar=1",
}


async def test_every_attribute_reads_back(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("attrs.>")
    await bus.flush()
    before = time.time()
    await bus.publish("attrs.a", b"x", headers={"k": "v"}, **ALL)
    msg = await asyncio.wait_for(sub.__anext__(), 5)
    read = {key: getattr(msg, key) for key in ALL}
    assert read == ALL
    assert msg.headers == {"k": "v"}
    assert msg.keyid is None
    assert before - 60 < msg.time < time.time() + 60
    await sub.unsubscribe()


async def test_serve_answers_with_the_handler_until_the_subscription_ends(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("svc.upper")

    async def upper(msg: busbar.Message) -> bytes:
        if msg.data == b"boom":
            raise RuntimeError("the handler fails on this one")
        return msg.data.upper()

    serving = asyncio.ensure_future(busbar.serve(sub, upper))
    reply = await bus.request("svc.upper", b"abc", timeout=5, headers={"h": "1"}, id="req-7")
    assert (reply.data, reply.correlation_id) == (b"ABC", "req-7")
    with pytest.raises(busbar.TimeoutError):  # unanswered; serving goes on
        await bus.request("svc.upper", b"boom", timeout=0.3)
    reply = await bus.request("svc.upper", b"def", timeout=5)
    assert reply.data == b"DEF"
    await sub.unsubscribe()
    assert await asyncio.wait_for(serving, 5) == 2


async def test_callback_subscriptions_as_nats_py(bus: busbar.Bus) -> None:
    got: list[bytes] = []
    done = asyncio.Event()

    async def handler(msg: busbar.Message) -> None:
        got.append(msg.data)
        if len(got) == 3:
            done.set()

    sub = await bus.subscribe("cb.*", cb=handler)
    for i in range(3):
        await bus.publish(f"cb.{i}", str(i))
    await asyncio.wait_for(done.wait(), 5)
    assert got == [b"0", b"1", b"2"]
    await sub.unsubscribe()
    with pytest.raises(TypeError, match="cb must be callable"):
        await bus.subscribe("cb.x", cb=42)  # type: ignore[arg-type]
    # Refused before anything started: no subscription is being made behind the error
    # (one was, and raced the fixture's close on RabbitMQ).
    await asyncio.sleep(0.2)
    assert bus.health()["subscriptions"] == 0


async def test_create_task_of_a_publish_works() -> None:
    """A publish that finishes at once (into memory, or into a NATS client's buffer) is a
    coroutine to asyncio.create_task."""
    bus = await busbar.connect()
    sub = await bus.subscribe("task.x")
    await asyncio.create_task(bus.publish("task.x", b"1"))  # type: ignore[arg-type]
    msg = await asyncio.wait_for(sub.__anext__(), 5)
    assert msg.data == b"1"
    await bus.close()


async def test_create_task_of_a_call_that_waits_works() -> None:
    """A call that has to wait (a request, a publish to a NATS server that is slow to
    take it) is a coroutine to asyncio.create_task too, and its result comes through."""
    bus = await busbar.connect()
    sub = await bus.subscribe("task.ask")

    async def answer() -> None:
        request = await sub.__anext__()
        await request.respond(b"42")

    responder = asyncio.create_task(answer())
    pending = bus.request("task.ask", b"?", timeout=5)
    assert isinstance(pending, busbar.Waiting)
    reply = await asyncio.create_task(pending)
    assert reply.data == b"42"
    await responder

    # A responder that never answers: cancelling the task cancels the call.
    silent = await bus.subscribe("task.slow")
    waiting: asyncio.Task[busbar.Message] = asyncio.create_task(
        bus.request("task.slow", b"?", timeout=5)  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (await asyncio.wait_for(silent.__anext__(), 2)).data == b"?"
    # Through wait_for, a Waiting times out as the future did.
    with pytest.raises(busbar.TimeoutError):
        await asyncio.wait_for(bus.request("task.slow", b"?", timeout=0.05), 5)
    await bus.close()


async def test_is_connected_and_is_closed() -> None:
    bus = await busbar.connect()
    assert (bus.is_connected, bus.is_closed) == (True, False)
    await bus.close()
    assert (bus.is_connected, bus.is_closed) == (False, True)


async def test_drain_ends_the_bus_after_what_subscriptions_hold() -> None:
    bus = await busbar.connect()
    sub = await bus.subscribe("drain.x")
    await bus.publish("drain.x", b"1")
    await bus.drain()
    assert [m.data async for m in sub] == [b"1"]
    with pytest.raises(busbar.ClosedError):
        await bus.publish("drain.x", b"2")


async def test_a_url_picks_the_backend(nats_server: NatsServer) -> None:
    bus = await busbar.connect(nats_server.url)
    assert bus.backend == "nats"
    await bus.close()
    with pytest.raises(busbar.InvalidArgumentError, match="nats://"):
        await busbar.connect("http://user:secret@example")


async def test_connection_events_end_at_once_without_a_connection() -> None:
    bus = await busbar.connect()
    assert [e async for e in bus.connection_events()] == []
    await bus.close()


async def test_a_lost_and_regained_server_is_told() -> None:
    server = NatsServer()
    try:
        bus = await busbar.connect(backend="nats", nats_url=server.url)
        events = bus.connection_events()
        server.stop()
        # A client error (the broken socket) may come first: the loss is then told.
        kinds: list[str] = []
        while "disconnected" not in kinds:
            kinds.append((await asyncio.wait_for(events.__anext__(), 10)).kind)
        server.restart()
        while "connected" not in kinds:
            kinds.append((await asyncio.wait_for(events.__anext__(), 15)).kind)
        await bus.close()
    finally:
        server.close()


async def test_discover_answers_a_list_and_checks_its_arguments() -> None:
    """Discovery of NATS services (tests/cross/discover.py finds a Rust service from here)."""
    async with await busbar.connect() as bus:
        assert await bus.discover(wait=0.05) == []
        assert await bus.discover("stats", name="nobody", wait=0.05) == []
        with pytest.raises(busbar.InvalidArgumentError, match="PING, INFO or STATS"):
            await bus.discover("PONG", wait=0.05)
        with pytest.raises(TypeError):
            await bus.discover(name=5)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await bus.discover(wait=-1)


async def test_publish_batch_sends_in_order_in_one_call(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("batch.>")
    await bus.flush()
    published = await bus.publish_batch(
        [
            ("batch.a", b"one"),
            ("batch.b", {"n": 2}, {"headers": {"k": "v"}, "id": "evt-2", "correlation_id": "c"}),
            ("batch.c", "three", None),
        ]
    )
    assert published == 3
    got = [await asyncio.wait_for(sub.__anext__(), 5) for _ in range(3)]
    assert [(m.subject, m.data) for m in got] == [
        ("batch.a", b"one"),
        ("batch.b", b'{"n":2}'),
        ("batch.c", b"three"),
    ]
    assert (got[1].headers, got[1].id, got[1].correlation_id) == ({"k": "v"}, "evt-2", "c")
    assert got[1].content_type == "application/json"
    assert await bus.publish_batch([]) == 0
    await sub.unsubscribe()


async def test_publish_batch_stops_at_the_first_failure_and_says_so(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("stop.>")
    await bus.flush()
    big = b"x" * (2 * 1024 * 1024)  # over the default max_payload on every backend
    with pytest.raises(busbar.PayloadTooLargeError) as raised:
        await bus.publish_batch(
            [("stop.a", b"1"), ("stop.b", b"2"), ("stop.c", big), ("stop.d", b"4")]
        )
    assert raised.value.published == 2
    got = [await asyncio.wait_for(sub.__anext__(), 5) for _ in range(2)]
    assert [m.subject for m in got] == ["stop.a", "stop.b"]
    await bus.publish("stop.end")
    end = await asyncio.wait_for(sub.__anext__(), 5)
    assert end.subject == "stop.end", "nothing after the failure was sent"
    await sub.unsubscribe()


@pytest.mark.parametrize(
    ("items", "says"),
    [
        ("batch.a", "items must be an iterable of tuples"),
        ({"batch.a": b"x"}, "items must be an iterable of tuples"),
        (5, "not iterable"),
        ([("batch.a",)], "items[0] must be a (subject, data)"),
        ([("batch.a", b"x"), ["batch.b", b"y"]], "items[1] must be a (subject, data)"),
        ([(1, b"x")], "items[0]: subject must be a str, not int"),
        ([("batch.a", b"x", {"evil": 1})], "items[0]: unexpected option 'evil'"),
        ([("batch.a", b"x", {"id": 5})], "items[0]: id must be a str, not int"),
        ([("batch.a", b"x", "id")], "items[0]: options must be a dict, not str"),
    ],
)
async def test_publish_batch_refuses_bad_items_before_sending_any(
    bus: busbar.Bus, items: object, says: str
) -> None:
    sub = await bus.subscribe("batch.>")
    await bus.flush()
    with pytest.raises(TypeError, match=re.escape(says)):
        await bus.publish_batch(items)  # type: ignore[arg-type]  # the wrong types under test
    await bus.publish("batch.end")
    first = await asyncio.wait_for(sub.__anext__(), 5)
    assert first.subject == "batch.end", "a refused batch publishes nothing"
    await sub.unsubscribe()


async def test_publish_batch_checks_subjects_as_it_publishes(bus: busbar.Bus) -> None:
    with pytest.raises(busbar.InvalidSubjectError) as raised:
        await bus.publish_batch([("batch.ok", b"x"), ("bad..subject", b"y"), ("batch.later", b"z")])
    assert raised.value.published == 1
