"""Publish/subscribe, queue groups, request/reply and lifetimes, on both backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import pytest

import busbar


async def take(sub: busbar.Subscription, n: int, timeout: float = 2.0) -> list[busbar.Message]:
    """The next `n` messages of `sub`, failing if they do not all come in time."""
    out: list[busbar.Message] = []

    async def collect() -> None:
        async for msg in sub:
            out.append(msg)
            if len(out) == n:
                return

    await asyncio.wait_for(collect(), timeout)
    return out


async def nothing_more(sub: busbar.Subscription, wait: float = 0.2) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(sub.__anext__(), wait)


async def test_wildcards_fan_out(bus: busbar.Bus) -> None:
    every = await bus.subscribe("orders.>")
    eu = await bus.subscribe("orders.eu.*")
    for subject in ["orders.eu.created", "orders.us.created", "orders.eu.paid.late"]:
        await bus.publish(subject, b'{"qty":1}')
    await bus.flush()
    assert [m.subject for m in await take(every, 3)] == [
        "orders.eu.created",
        "orders.us.created",
        "orders.eu.paid.late",
    ]
    assert [m.subject for m in await take(eu, 1)] == ["orders.eu.created"]
    await nothing_more(eu)


async def test_payload_kinds_and_headers(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("kinds.*")
    await bus.publish("kinds.bytes", b"\x00\xffraw")
    await bus.publish("kinds.str", "h\u00e9llo")
    await bus.publish("kinds.json", {"qty": 2, "items": ["a"]}, headers={"tenant": "st-marys"})
    await bus.publish("kinds.bytearray", bytearray(b"ba"))
    await bus.publish("kinds.memoryview", memoryview(b"mv"))
    await bus.publish("kinds.empty")
    got = await take(sub, 6)
    assert [m.data for m in got] == [
        b"\x00\xffraw",
        "h\u00e9llo".encode(),
        b'{"qty":2,"items":["a"]}',  # compact, as JSON.stringify writes it
        b"ba",
        b"mv",
        b"",
    ]
    assert got[2].json() == {"qty": 2, "items": ["a"]}
    assert got[2].content_type == "application/json"
    assert got[2].headers == {"tenant": "st-marys"}
    assert got[0].headers == {} and got[0].content_type is None
    assert len({m.id for m in got}) == 6, "every event gets its own id"
    assert got[0].source == "busbar" and got[0].event_type == "busbar.event"
    assert got[0].reply_to is None and got[0].correlation_id is None
    assert got[0].time > 1.7e9


async def test_order_is_kept_across_batches(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("seq")
    n = 2000
    for i in range(n):
        await bus.publish("seq", str(i))
    got = await take(sub, n, timeout=10)
    assert [int(m.data) for m in got] == list(range(n))


async def test_queue_group_gives_each_message_to_one_member(bus: busbar.Bus) -> None:
    a = await bus.queue_subscribe("jobs.resize", "workers")
    b = await bus.queue_subscribe("jobs.resize", "workers")
    assert a.queue_group == "workers" and a.pattern == "jobs.resize"
    plain = await bus.subscribe("jobs.resize")
    for n in range(20):
        await bus.publish("jobs.resize", f"image-{n}")
    await bus.flush()
    everything = [m.data for m in await take(plain, 20)]
    got: list[bytes] = []
    for sub in (a, b):
        await sub.drain()
        got += [m.data async for m in sub]
    assert sorted(got) == sorted(everything), "each job once, to one member"
    assert len(got) == 20


async def test_publish_takes_the_attributes_core_takes(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("attrs.*")
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await bus.publish(
        "attrs.full",
        {"qty": 1},
        headers={"tenant": "t1"},
        id="order-1",
        event_type="order.created",
        correlation_id="corr-1",
        classification="internal",
        traceparent=trace,
        tracestate="k=v",
    )
    await bus.publish("attrs.typed", "<a/>", content_type="application/xml")
    await bus.publish("attrs.json", [1], content_type="application/cloudevents+json")
    full, typed, json_typed = await take(sub, 3)
    assert (full.id, full.event_type, full.correlation_id) == ("order-1", "order.created", "corr-1")
    assert (full.classification, full.traceparent) == ("internal", trace)
    assert full.content_type == "application/json" and full.headers == {"tenant": "t1"}
    assert typed.content_type == "application/xml"
    assert json_typed.content_type == "application/cloudevents+json", "options win over JSON"
    with pytest.raises(busbar.InvalidArgument):
        await bus.publish("attrs.bad", b"", id="")
    with pytest.raises(TypeError, match=r"publish\(\): event_type must be a str, not int"):
        await bus.publish("attrs.bad", b"", event_type=5)  # type: ignore[arg-type]
    await nothing_more(sub)


async def test_a_request_id_is_echoed_by_the_reply(bus: busbar.Bus) -> None:
    responder = await bus.subscribe("echo.id")

    async def serve() -> None:
        async for req in responder:
            await req.respond(b"ok")

    server = asyncio.ensure_future(serve())
    try:
        reply = await bus.request("echo.id", b"?", id="req-42", timeout=2)
        assert reply.correlation_id == "req-42"
    finally:
        server.cancel()


async def test_request_reply_echoes_the_correlation_id(bus: busbar.Bus) -> None:
    responder = await bus.subscribe("time.now")

    async def serve() -> None:
        async for req in responder:
            assert req.reply_to is not None
            await req.respond(b"tea time, you asked " + req.data, headers={"served-by": "py"})

    server = asyncio.ensure_future(serve())
    try:
        reply = await bus.request("time.now", "what time is it?", timeout=2)
        assert reply.data == b"tea time, you asked what time is it?"
        assert reply.headers == {"served-by": "py"}
        assert reply.correlation_id is not None
        second = await bus.request("time.now", {"q": 1}, timeout=2)
        assert second.correlation_id != reply.correlation_id
    finally:
        server.cancel()


async def test_forged_replies_are_refused_and_counted(bus: busbar.Bus) -> None:
    responder = await bus.subscribe("svc.forged")
    pending = asyncio.ensure_future(bus.request("svc.forged", b"q", timeout=5))
    [req] = await take(responder, 1)
    assert req.reply_to is not None
    before = bus.stats()
    assert {"rejected_replies", "undecodable", "disconnects"} <= set(before)
    await bus.publish(req.reply_to, b"forged: no correlation id")
    await bus.flush()
    for _ in range(500):
        if bus.stats()["rejected_replies"] > before["rejected_replies"]:
            break
        await asyncio.sleep(0.01)
    assert bus.stats()["rejected_replies"] == before["rejected_replies"] + 1
    await req.respond(b"real")
    assert (await pending).data == b"real"


async def test_publish_timeout_is_a_setting() -> None:
    with pytest.raises(busbar.InvalidArgument, match="publish_timeout_ms"):
        await busbar.connect(publish_timeout_ms=0)
    bus = await busbar.connect(publish_timeout_ms=250)
    await bus.close()


async def test_request_errors(bus: busbar.Bus) -> None:
    with pytest.raises(busbar.NoResponders) as no:
        await bus.request("nobody.home", b"?", timeout=2)
    assert no.value.code == "no_responders" and "nobody.home" in str(no.value)
    silent = await bus.subscribe("silent")
    with pytest.raises(busbar.Timeout) as late:
        await bus.request("silent", b"?", timeout=0.1)
    assert late.value.code == "timeout"
    assert isinstance(late.value, busbar.BusError)
    await silent.unsubscribe()
    with pytest.raises(ValueError, match="timeout"):
        await bus.request("silent", b"?", timeout=-1)


async def test_exceptions_end_in_error_and_a_timeout_is_the_builtin_one(bus: busbar.Bus) -> None:
    """docs/design.md §9: class names end in Error; `except TimeoutError` catches a timeout."""
    silent = await bus.subscribe("silent.builtin")
    with pytest.raises(TimeoutError) as builtin:
        await bus.request("silent.builtin", b"?", timeout=0.05)
    assert isinstance(builtin.value, busbar.TimeoutError)
    assert isinstance(builtin.value, busbar.BusError) and builtin.value.code == "timeout"
    with pytest.raises(asyncio.TimeoutError):
        await bus.request("silent.builtin", b"?", timeout=0.05)
    await silent.unsubscribe()
    assert busbar.Timeout is busbar.TimeoutError  # the names of before, as aliases
    assert busbar.NoResponders is busbar.NoRespondersError
    assert busbar.Lagged is busbar.LaggedError
    codes = {}
    for name in dir(busbar):
        cls = getattr(busbar, name)
        if (
            isinstance(cls, type)
            and issubclass(cls, busbar.BusError)
            and cls is not busbar.BusError
        ):
            codes[cls.__name__] = cls.code
    assert all(name.endswith("Error") for name in codes), codes
    assert len(set(codes.values())) == len(codes)


async def test_a_bad_value_fails_in_the_awaited_result_as_in_javascript(bus: busbar.Bus) -> None:
    """A negative timeout and an unknown config key are invalid_argument, raised by the
    awaitable (as JavaScript rejects its Promise); a wrong type raises at the call."""
    pending = bus.request("silent", b"?", timeout=-1)
    with pytest.raises(busbar.InvalidArgumentError, match="timeout"):
        await pending
    connecting = busbar.connect(no_such_key=1)
    with pytest.raises(busbar.InvalidArgumentError, match="no_such_key"):
        await connecting
    with pytest.raises(TypeError):
        bus.request("silent", b"?", timeout="soon")  # type: ignore[arg-type]


async def test_respond_to_a_plain_message_is_refused(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("plain")
    await bus.publish("plain", b"x")
    (msg,) = await take(sub, 1)
    with pytest.raises(busbar.InvalidArgument, match="not a request"):
        await msg.respond(b"y")


async def test_bad_input_raises_the_right_class(bus: busbar.Bus) -> None:
    with pytest.raises(busbar.InvalidSubject, match=r"orders\.\.eu"):
        await bus.publish("orders..eu", b"x")
    with pytest.raises(busbar.InvalidSubject):
        await bus.publish("orders.*", b"x")
    with pytest.raises(busbar.InvalidSubject):
        await bus.subscribe("a.>.b")
    with pytest.raises(busbar.InvalidArgument, match="ce-id"):
        await bus.publish("a", b"x", headers={"ce-id": "1"})
    with pytest.raises(busbar.InvalidArgument):
        await bus.publish("a", b"x", headers={"x": "line\r\nInjected: 1"})


async def test_wrong_types_raise_type_error(bus: busbar.Bus) -> None:
    with pytest.raises(TypeError, match=r"publish\(\): subject must be a str, not int"):
        await bus.publish(42, b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="JSON-serialisable"):
        await bus.publish("a", object())
    with pytest.raises(TypeError, match="pattern must be a str"):
        await bus.subscribe(b"a.b")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="group must be a str"):
        await bus.queue_subscribe("a", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r'publish\(\): headers\["k"\] must be a str, not int'):
        await bus.publish("a", b"x", headers={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(
        TypeError, match=r"request\(\): headers must be a dict of str to str, not list"
    ):
        await bus.request("a", b"x", headers=[("k", "v")])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await bus.request("a", b"x", timeout="soon")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        busbar.subject_matches(None, "a")  # type: ignore[arg-type]


async def test_payload_too_large() -> None:
    bus = await busbar.connect(max_payload=16)
    with pytest.raises(busbar.PayloadTooLarge) as e:
        await bus.publish("big", b"x" * 17)
    assert e.value.code == "payload_too_large"
    assert "17" in str(e.value) and "16" in str(e.value)
    await bus.publish("big", b"x" * 16)
    await bus.close()


async def test_unsubscribe_ends_iteration_and_drain_keeps_what_is_queued(bus: busbar.Bus) -> None:
    gone = await bus.subscribe("life.>")
    drained = await bus.subscribe("life.>")
    for i in range(3):
        await bus.publish(f"life.{i}", b"x")
    await bus.flush()
    assert len(await take(drained, 1)) == 1  # one taken, two still queued
    await asyncio.sleep(0.05)
    await gone.unsubscribe()
    assert [m async for m in gone] == []
    await drained.drain()
    assert [m.subject async for m in drained] == ["life.1", "life.2"]


async def test_async_with_closes_bus_and_subscription(
    backend: str, request: pytest.FixtureRequest
) -> None:
    kwargs: dict[str, str] = {"backend": backend}
    if backend == "nats":
        kwargs["nats_url"] = request.getfixturevalue("nats_server").url
    async with await busbar.connect(**kwargs) as bus:
        async with await bus.subscribe("ctx") as sub:
            await bus.publish("ctx", b"1")
            assert [m.data for m in await take(sub, 1)] == [b"1"]
        assert [m async for m in sub] == [], "the subscription ended with the block"
        held = await bus.subscribe("held")
    with pytest.raises(busbar.Closed) as e:
        await bus.publish("ctx", b"2")
    assert e.value.code == "closed"
    with pytest.raises(busbar.Closed):
        await bus.subscribe("ctx")
    assert [m async for m in held] == [], "closing the bus ends its subscriptions"


async def test_stats_count(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("count")
    for _ in range(5):
        await bus.publish("count", b"x")
    await take(sub, 5)
    assert bus.stats()["published"] >= 5
    assert sub.stats()["delivered"] == 5
    assert sub.stats()["pending"] == 0


async def test_cancelled_waits_release_their_calls(bus: busbar.Bus) -> None:
    silent = await bus.subscribe("slow")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(bus.request("slow", b"?", timeout=5), 0.1)
    sub = await bus.subscribe("after")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(sub.__anext__(), 0.05)
    await bus.publish("after", b"1")
    assert (await asyncio.wait_for(sub.__anext__(), 2)).data == b"1"
    await silent.unsubscribe()


async def test_a_message_for_a_cancelled_wait_is_kept(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("kept")
    await bus.flush()
    waiting = asyncio.ensure_future(sub.__anext__())
    await asyncio.sleep(0.05)  # the wait is now parked in the runtime
    await bus.publish("kept", b"1")
    time.sleep(0.2)  # noqa: ASYNC251  (blocks the loop on purpose: the runtime finishes the wait first)
    assert not waiting.done()
    waiting.cancel()
    assert (await asyncio.wait_for(sub.__anext__(), 2)).data == b"1"


async def result_of(call: Awaitable[object]) -> object:
    return await call


async def test_calls_without_a_result_return_none(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("none")
    calls: list[Awaitable[object]] = [
        bus.publish("none", b"x"),
        bus.publish("none", {"a": 1}, headers={"h": "v"}),
        bus.flush(),
        sub.drain(),
        sub.unsubscribe(),
    ]
    assert [await result_of(c) for c in calls] == [None] * 5
    # Made only now: a call starts when it is made, and a flush the close overtakes fails.
    assert await result_of(bus.close()) is None
