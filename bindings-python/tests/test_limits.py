"""Limits and hostile inputs (issue 12), on both backends: deep and long subjects,
numeric options out of range, NaN in JSON, undecodable JSON."""

from __future__ import annotations

import asyncio
import json

import pytest

import busbar


@pytest.fixture(params=["memory", "nats"])
def any_backend(request: pytest.FixtureRequest) -> str:
    """Subjects at busbar's own limits and durable options: RabbitMQ refuses keys over 255
    bytes and durable streams, each by name (core/tests/rabbitmq.rs, test_examples.py)."""
    return str(request.param)


async def test_deep_and_long_subjects_are_refused(bus: busbar.Bus) -> None:
    deep = ".".join(["a"] * 10_000)  # 19,999 bytes: overflowed the subject trie's recursion
    with pytest.raises(busbar.InvalidSubject, match="limit of 2000 bytes") as e:
        await bus.subscribe(deep)
    assert len(str(e.value)) < 300, "the input is quoted short"
    with pytest.raises(busbar.InvalidSubject, match="limit of 256 tokens"):
        await bus.queue_subscribe(".".join(["*"] * 300) + ".>", "workers")
    long_subject = "x" * 5000  # over a NATS server's 4096-byte control line
    with pytest.raises(busbar.InvalidSubject):
        await bus.publish(long_subject, b"x")
    with pytest.raises(busbar.InvalidSubject):
        await bus.request(long_subject, b"x", timeout=0.5)
    with pytest.raises(busbar.InvalidArgument, match="2000 bytes"):
        await bus.queue_subscribe("a", "g" * 2001)

    # At the limits everything works, and the connection stays usable.
    longest = "p" * 1996 + ".end"
    deepest = ".".join(["d"] * 256)
    by_long = await bus.subscribe("p" * 1996 + ".*")
    by_deep = await bus.subscribe(".".join(["*"] * 255) + ".>")
    await bus.flush()
    await bus.publish(longest, b"long")
    await bus.publish(deepest, b"deep")
    assert (await asyncio.wait_for(by_long.__anext__(), 5)).data == b"long"
    assert (await asyncio.wait_for(by_deep.__anext__(), 5)).data == b"deep"


async def test_numeric_options_are_refused_not_panics(bus: busbar.Bus) -> None:
    await bus.declare_stream("LIMITS", ["limits.>"])
    # ack_wait of 10^15 s overflowed a clock on the in-memory bus and was an opaque
    # backend error on NATS.
    with pytest.raises(busbar.InvalidArgument, match="ack_wait"):
        await bus.durable_subscribe("LIMITS", "c", ack_wait=1e15)
    with pytest.raises(busbar.InvalidArgument, match="max_age"):
        await bus.declare_stream("LIMITS2", ["limits2.>"], max_age=1e15)
    with pytest.raises(busbar.InvalidArgument, match="max_bytes"):
        await bus.declare_stream("LIMITS2", ["limits2.>"], max_bytes=2**64 - 1)
    with pytest.raises(busbar.InvalidArgument, match="timeout"):
        await bus.request("limits.x", b"", timeout=1e15)
    with pytest.raises(ValueError):
        await bus.request("limits.x", b"", timeout=1e300)
    with pytest.raises(ValueError):
        await bus.request("limits.x", b"", timeout=float("nan"))


@pytest.mark.parametrize("capacity", [2**61, 2**64 - 1, 2**24 + 1])
async def test_subscription_capacity_is_bounded(capacity: int) -> None:
    # 2^61 was accepted, then subscribe() raised a PanicException (a BaseException).
    with pytest.raises(busbar.InvalidArgument, match="subscription_capacity"):
        await busbar.connect(subscription_capacity=capacity)
    bus = await busbar.connect(subscription_capacity=2**24)
    await bus.subscribe("ok")
    await bus.close()


async def test_nan_is_not_sent_as_json(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("nan")
    await bus.flush()
    for bad in [float("nan"), {"x": float("inf")}, [float("-inf")]]:
        with pytest.raises(busbar.InvalidArgument, match="not valid JSON") as e:
            await bus.publish("nan", bad)
        assert isinstance(e.value, ValueError)
    await bus.publish("nan", {"x": 1.5})
    msg = await asyncio.wait_for(sub.__anext__(), 5)
    assert msg.json() == {"x": 1.5}


async def test_undecodable_json_is_a_decode_error(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("text")
    await bus.flush()
    await bus.publish("text", b"not json {")
    msg = await asyncio.wait_for(sub.__anext__(), 5)
    with pytest.raises(busbar.DecodeError) as e:
        msg.json()
    assert e.value.code == "decode"
    assert msg.id in str(e.value)
    # Still a ValueError, as json.JSONDecodeError is, so `except ValueError` keeps working.
    assert isinstance(e.value, ValueError) and isinstance(e.value, busbar.BusError)
    assert not isinstance(e.value, json.JSONDecodeError)
    assert issubclass(busbar.InvalidArgument, ValueError)
