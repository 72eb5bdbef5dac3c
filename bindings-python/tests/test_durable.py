"""Durable streams on both backends: acked publish and dedupe, ack / nak / term with
dead letters, replay, closing a durable subscription, errors and argument types.

The NATS server lives for the whole session, so every test uses its own stream name and
subjects (JetStream refuses overlapping subjects) and its own consumer on `DLQ_DLQ`."""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
import uuid

import pytest

import busbar


@pytest.fixture(params=["memory", "nats"])
def any_backend(request: pytest.FixtureRequest) -> str:
    """The backends with durable streams (RabbitMQ refuses them: test_examples.py)."""
    return str(request.param)


def unique() -> str:
    """A name part no other test (or earlier run on the same server) uses."""
    return uuid.uuid4().hex[:10]


async def stream(bus: busbar.Bus) -> tuple[str, str]:
    """A fresh stream over `<prefix>.>`: its name and the subject prefix."""
    tag = unique()
    name, prefix = f"S_{tag}", f"d{tag}"
    info = await bus.declare_stream(name, [f"{prefix}.>"])
    assert (info.name, info.messages, info.last_sequence) == (name, 0, 0)
    return name, prefix


async def receive(sub: busbar.DurableSubscription, timeout: float = 5.0) -> busbar.DurableMessage:
    return await asyncio.wait_for(sub.__anext__(), timeout)


async def nothing_more(sub: busbar.DurableSubscription, wait: float = 0.3) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(sub.__anext__(), wait)


async def test_publish_is_acked_and_a_repeated_id_is_stored_once(bus: busbar.Bus) -> None:
    name, prefix = await stream(bus)
    first = await bus.publish_durable(f"{prefix}.created", b"one", id="order-1")
    assert (first.stream, first.sequence, first.duplicate) == (name, 1, False)
    second = await bus.publish_durable(f"{prefix}.paid", {"qty": 2}, headers={"k": "v"})
    assert (second.sequence, second.duplicate) == (2, False)
    again = await bus.publish_durable(f"{prefix}.created", b"one", id="order-1")
    assert (again.stream, again.sequence, again.duplicate) == (name, 1, True)
    info = await bus.stream_info(name)
    assert (info.name, info.messages, info.first_sequence, info.last_sequence) == (name, 2, 1, 2)
    assert info.bytes > 0
    redeclared = await bus.declare_stream(name, f"{prefix}.>")  # idempotent; one pattern
    assert (redeclared.messages, redeclared.last_sequence) == (2, 2)


async def test_ack_settles_and_an_unsettled_message_comes_back(bus: busbar.Bus) -> None:
    name, prefix = await stream(bus)
    await bus.publish_durable(f"{prefix}.a", b"acked", headers={"tenant": "t1"}, id="m-1")
    await bus.publish_durable(f"{prefix}.b", {"n": 2})
    consumer = f"c{unique()}"
    sub = await bus.durable_subscribe(name, consumer, ack_wait=0.5)
    assert (sub.stream, sub.name) == (name, consumer)
    first = await receive(sub)
    assert isinstance(first, busbar.DurableMessage) and isinstance(first, busbar.Message)
    assert (first.subject, first.data, first.id) == (f"{prefix}.a", b"acked", "m-1")
    assert first.headers["tenant"] == "t1"
    assert (first.attempt, first.sequence, first.stream) == (1, 1, name)
    await first.ack()
    second = await receive(sub)
    assert (second.sequence, second.attempt, second.json()) == (2, 1, {"n": 2})
    assert second.content_type == "application/json"
    # Not settled: after ack_wait it is delivered again; the acked one is not.
    again = await receive(sub)
    assert (again.sequence, again.attempt) == (2, 2)
    await again.ack()
    await nothing_more(sub, 0.8)
    await sub.unsubscribe()


async def test_nak_redelivers_with_the_next_attempt(bus: busbar.Bus) -> None:
    name, prefix = await stream(bus)
    await bus.publish_durable(f"{prefix}.job", b"work")
    sub = await bus.durable_subscribe(name, f"c{unique()}", backoff=(0.05, 2.0, 1.0))
    m = await receive(sub)
    assert m.attempt == 1
    await m.nak()  # the consumer's backoff: 0.05 s
    m = await receive(sub)
    assert (m.data, m.attempt, m.sequence) == (b"work", 2, 1)
    await m.nak(delay=0.05)
    m = await receive(sub)
    assert (m.attempt, m.sequence) == (3, 1)
    await m.in_progress()
    await m.ack()
    await nothing_more(sub)
    await sub.unsubscribe()


async def test_term_dead_letters_with_the_reason(bus: busbar.Bus) -> None:
    name, prefix = await stream(bus)
    subject = f"{prefix}.poison"
    await bus.publish_durable(subject, b"not json", headers={"tenant": "t9"})
    sub = await bus.durable_subscribe(name, f"c{unique()}")
    m = await receive(sub)
    await m.term("cannot parse")
    await nothing_more(sub)
    dead = await bus.durable_subscribe("DLQ_DLQ", f"i{unique()}", filter=f"dlq.{subject}")
    letter = await receive(dead)
    assert (letter.subject, letter.data, letter.stream) == (
        f"dlq.{subject}",
        b"not json",
        "DLQ_DLQ",
    )
    assert "cannot parse" in letter.headers["busbar-dlq-reason"]
    assert letter.headers["busbar-dlq-stream"] == name
    assert letter.headers["busbar-dlq-attempts"] == "1"
    assert letter.headers["tenant"] == "t9"
    await letter.ack()
    await sub.unsubscribe()
    await dead.unsubscribe()


async def test_nak_on_the_last_attempt_dead_letters(bus: busbar.Bus) -> None:
    name, prefix = await stream(bus)
    subject = f"{prefix}.fragile"
    await bus.publish_durable(subject, b"x")
    consumer = f"c{unique()}"
    sub = await bus.durable_subscribe(name, consumer, max_deliver=2, backoff=(0.01, 1.0, 0.01))
    await (await receive(sub)).nak()
    last = await receive(sub)
    assert last.attempt == 2
    await last.nak()
    dead = await bus.durable_subscribe("DLQ_DLQ", f"i{unique()}", filter=f"dlq.{subject}")
    letter = await receive(dead)
    assert "nacked" in letter.headers["busbar-dlq-reason"]
    assert letter.headers["busbar-dlq-consumer"] == consumer
    assert letter.headers["busbar-dlq-attempts"] == "2"
    await nothing_more(sub)
    await sub.unsubscribe()
    await dead.unsubscribe()


async def test_replay_from_a_sequence_a_time_or_only_new(bus: busbar.Bus) -> None:
    name, prefix = await stream(bus)
    for i in range(1, 6):
        await bus.publish_durable(f"{prefix}.n", str(i))

    async def sequences(sub: busbar.DurableSubscription, n: int) -> list[int]:
        out = []
        for _ in range(n):
            m = await receive(sub)
            await m.ack()
            out.append(m.sequence)
        await nothing_more(sub, 0.2)
        await sub.unsubscribe()
        return out

    from3 = await bus.durable_subscribe(name, f"c{unique()}", start=3)
    assert await sequences(from3, 3) == [3, 4, 5]
    everything = await bus.durable_subscribe(name, f"c{unique()}", start="beginning")
    assert await sequences(everything, 5) == [1, 2, 3, 4, 5]

    await asyncio.sleep(0.05)
    since = datetime.datetime.now(datetime.timezone.utc)
    await asyncio.sleep(0.05)
    new = await bus.durable_subscribe(name, f"c{unique()}", start="new")
    await bus.publish_durable(f"{prefix}.n", "6")
    assert await sequences(new, 1) == [6]
    by_time = await bus.durable_subscribe(name, f"c{unique()}", start=since)
    assert await sequences(by_time, 1) == [6]


async def test_closing_ends_iteration_and_unsettled_messages_come_back(bus: busbar.Bus) -> None:
    name, prefix = await stream(bus)
    consumer = f"c{unique()}"
    async with await bus.durable_subscribe(name, consumer, ack_wait=0.5) as sub:
        waiting = asyncio.ensure_future(sub.__anext__())
        await bus.publish_durable(f"{prefix}.x", b"held")
        held = await asyncio.wait_for(waiting, 5)
        assert held.attempt == 1
        pending = asyncio.ensure_future(sub.__anext__())
        await asyncio.sleep(0.05)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 5)
    assert [m async for m in sub] == []
    # The consumer lives on: its unsettled message is delivered again to the next subscriber.
    resumed = await bus.durable_subscribe(name, consumer, ack_wait=0.5)
    again = await receive(resumed)
    assert (again.sequence, again.attempt, again.data) == (1, 2, b"held")
    await again.ack()
    await resumed.unsubscribe()


async def test_durable_stats_and_drain_as_a_plain_subscription(bus: busbar.Bus) -> None:
    """The verbs of docs/design.md §9: stats(), drain() and unsubscribe() on a durable one."""
    name, prefix = await stream(bus)
    consumer = f"c{unique()}"
    for text in (b"one", b"two"):
        await bus.publish_durable(f"{prefix}.x", text)
    sub = await bus.durable_subscribe(name, consumer, ack_wait=1)
    assert sub.stats() == {"delivered": 0, "undecodable": 0, "unsettled": 0}
    first = await receive(sub)
    assert first.data == b"one"
    stats = sub.stats()
    assert stats["unsettled"] >= 1 and stats["delivered"] >= 1
    # drain waits for the message handed out to be settled, then iteration ends.
    draining = asyncio.ensure_future(sub.drain())
    await asyncio.sleep(0.1)
    assert not draining.done()
    await first.ack()
    await asyncio.wait_for(draining, 5)
    rest = [m async for m in sub]
    for m in rest:  # at most what was already queued here
        await m.ack()
    assert sub.stats()["unsettled"] == 0
    await sub.unsubscribe()
    # Nothing was lost: what was not handed out comes to the consumer's next reader.
    if not rest:
        resumed = await bus.durable_subscribe(name, consumer, ack_wait=1)
        second = await receive(resumed, 10)
        assert second.data == b"two"
        await second.ack()
        await resumed.unsubscribe()


async def test_a_delivery_for_a_cancelled_wait_is_kept(bus: busbar.Bus) -> None:
    name, prefix = await stream(bus)
    sub = await bus.durable_subscribe(name, f"c{unique()}", ack_wait=30)
    waiting = asyncio.ensure_future(sub.__anext__())
    await asyncio.sleep(0.05)  # the wait is now parked in the runtime

    async def publish() -> None:
        await bus.publish_durable(f"{prefix}.kept", b"1")

    # Published from another thread's loop while this loop is blocked on purpose, so the
    # runtime finishes the wait before this loop could hand the message over.
    publisher = threading.Thread(target=asyncio.run, args=(publish(),))
    publisher.start()
    publisher.join()
    time.sleep(0.3)  # noqa: ASYNC251
    assert not waiting.done()
    waiting.cancel()
    # Handed to the next wait at once, not redelivered after ack_wait as attempt 2.
    m = await receive(sub, 2)
    assert (m.data, m.attempt) == (b"1", 1)
    await m.ack()
    await sub.unsubscribe()


async def test_streams_and_consumers_are_listed_and_deleted(bus: busbar.Bus) -> None:
    name, prefix = await stream(bus)
    await bus.publish_durable(f"{prefix}.a", b"1")
    await bus.publish_durable(f"{prefix}.b", b"2")
    listed = {s.name: s for s in await bus.list_streams()}
    assert (listed[name].subjects, listed[name].messages) == ([f"{prefix}.>"], 2)
    consumer = f"c{unique()}"
    sub = await bus.durable_subscribe(name, consumer, filter=f"{prefix}.>")
    m = await receive(sub)
    await m.ack()
    await sub.unsubscribe()
    assert [c.name for c in await bus.list_consumers(name)] == [consumer]
    info = await bus.consumer_info(name, consumer)
    assert (info.stream, info.name, info.filter) == (name, consumer, f"{prefix}.>")
    assert info.delivered_sequence >= 1  # NATS pulls ahead of the handler
    assert info.pending + info.delivered_sequence == 2
    await bus.delete_consumer(name, consumer)
    assert await bus.list_consumers(name) == []
    with pytest.raises(busbar.InvalidArgument, match=consumer):
        await bus.consumer_info(name, consumer)
    await bus.delete_stream(name)
    assert name not in [s.name for s in await bus.list_streams()]
    with pytest.raises(busbar.InvalidArgument, match=name):
        await bus.delete_stream(name)
    with pytest.raises(busbar.InvalidArgument):
        await bus.delete_consumer("bad name", "c")
    with pytest.raises(TypeError, match="delete_stream"):
        await bus.delete_stream(5)  # type: ignore[arg-type]


async def test_errors_map_to_invalid_argument(bus: busbar.Bus) -> None:
    with pytest.raises(busbar.InvalidArgument) as e:
        await bus.durable_subscribe(f"MISSING_{unique()}", "c")
    assert e.value.code == "invalid_argument"
    with pytest.raises(busbar.InvalidArgument):
        await bus.stream_info(f"MISSING_{unique()}")
    nowhere = f"nowhere{unique()}.x"
    with pytest.raises(busbar.InvalidArgument, match=nowhere):
        await bus.publish_durable(nowhere, b"")
    with pytest.raises(busbar.InvalidArgument):
        await bus.declare_stream("bad.name", ["x"])
    name, prefix = await stream(bus)
    with pytest.raises(busbar.InvalidArgument, match="max_deliver"):
        await bus.durable_subscribe(name, "c", max_deliver=0)
    with pytest.raises(busbar.InvalidArgument, match="backoff"):
        await bus.durable_subscribe(name, "c", backoff=(2.0, 0.5, 1.0))

    await bus.publish_durable(f"{prefix}.twice", b"x")
    sub = await bus.durable_subscribe(name, f"c{unique()}")
    m = await receive(sub)
    await m.ack()
    for settle in (m.ack, lambda: m.nak(0.1), lambda: m.term("late"), m.in_progress):
        with pytest.raises(busbar.InvalidArgument) as e:
            await settle()
        assert e.value.code == "invalid_argument"
    await sub.unsubscribe()


async def test_wrong_argument_types_name_the_call() -> None:
    bus = await busbar.connect()
    name, prefix = await stream(bus)
    bad = bus.durable_subscribe
    with pytest.raises(TypeError, match=r"declare_stream\(\): name must be a str, not int"):
        await bus.declare_stream(1, ["x"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"declare_stream\(\): subjects item must be a str"):
        await bus.declare_stream("S", [1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"declare_stream\(\): max_bytes must be an int, not"):
        await bus.declare_stream("S", ["x"], max_bytes=True)
    with pytest.raises(ValueError, match=r"declare_stream\(\): max_age must be a finite"):
        await bus.declare_stream("S", ["x"], max_age=-1.0)
    with pytest.raises(TypeError, match=r"publish_durable\(\): id must be a str, not int"):
        await bus.publish_durable(f"{prefix}.a", b"", id=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"durable_subscribe\(\): max_deliver must be an int"):
        await bad(name, "c", max_deliver="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"durable_subscribe\(\): max_deliver is out of range"):
        await bad(name, "c", max_deliver=-1)
    with pytest.raises(TypeError, match=r"durable_subscribe\(\): start must be None, "):
        await bad(name, "c", start=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"durable_subscribe\(\): start must be \"beginning\""):
        await bad(name, "c", start="later")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"durable_subscribe\(\): backoff must be a tuple"):
        await bad(name, "c", backoff=(1.0, 2.0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"durable_subscribe\(\): ack_wait must be a number"):
        await bad(name, "c", ack_wait="1")  # type: ignore[arg-type]
    await bus.publish_durable(f"{prefix}.a", b"x")
    sub = await bus.durable_subscribe(name, "typed")
    m = await receive(sub)
    with pytest.raises(TypeError, match=r"nak\(\): delay must be a number, not str"):
        await m.nak("soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"nak\(\): delay must be a finite"):
        await m.nak(-0.5)
    with pytest.raises(TypeError, match=r"term\(\): reason must be a str, not NoneType"):
        await m.term(None)  # type: ignore[arg-type]
    await m.ack()  # the wrong calls above did not settle it
    await sub.unsubscribe()
    await bus.close()
