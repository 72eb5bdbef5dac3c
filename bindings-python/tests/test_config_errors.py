"""Configuration through keywords and BUSBAR_* variables, and the exception classes."""

from __future__ import annotations

import asyncio

import pytest

import busbar

CODES = {
    "invalid_subject": busbar.InvalidSubject,
    "invalid_argument": busbar.InvalidArgument,
    "payload_too_large": busbar.PayloadTooLarge,
    "timeout": busbar.Timeout,
    "no_responders": busbar.NoResponders,
    "forbidden": busbar.Forbidden,
    "closed": busbar.Closed,
    "decode": busbar.DecodeError,
    "crypto": busbar.CryptoError,
    "backend": busbar.BackendError,
    "lagged": busbar.Lagged,
    "unsupported": busbar.UnsupportedError,
    "circuit_open": busbar.CircuitOpenError,
    "rate_limited": busbar.RateLimitedError,
}


def test_one_exception_class_per_code() -> None:
    for code, cls in CODES.items():
        assert issubclass(cls, busbar.BusError) and cls is not busbar.BusError
        assert cls.code == code
    assert len(set(CODES.values())) == len(CODES)
    assert issubclass(busbar.BusError, Exception)


def test_validate_functions() -> None:
    busbar.validate_subject("orders.eu.created")
    busbar.validate_pattern("orders.*.>")
    with pytest.raises(busbar.InvalidSubject, match="a b"):
        busbar.validate_subject("a b")
    with pytest.raises(busbar.InvalidSubject):
        busbar.validate_subject("orders.*")
    assert busbar.subject_matches("orders.>", "orders.eu.created")
    assert not busbar.subject_matches("orders.>", "orders")
    assert not busbar.subject_matches("a..b", "a..b")


async def test_memory_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUSBAR_BACKEND", raising=False)
    bus = await busbar.connect()
    assert bus.backend == "memory"
    await bus.close()


async def test_keywords_pass_through_config_set() -> None:
    bus = await busbar.connect(backend="memory", max_payload=8, source="svc-a", backpressure="lag")
    sub = await bus.subscribe("k")
    await bus.publish("k", b"12345678")
    msg = await asyncio.wait_for(sub.__anext__(), 2)
    assert msg.source == "svc-a"
    with pytest.raises(busbar.PayloadTooLarge):
        await bus.publish("k", b"123456789")
    await bus.close()


async def test_breaker_and_rate_limit_by_keywords() -> None:
    # The same keys and codes as every language: core's resilience layer.
    bus = await busbar.connect(breaker_failures=1, breaker_cooldown_ms=60_000)
    with pytest.raises(busbar.NoResponders):
        await bus.request("nobody.home", b"?", timeout=1)
    with pytest.raises(busbar.CircuitOpenError, match=r"nobody\.home") as opened:
        await bus.request("nobody.home", b"?", timeout=1)
    assert opened.value.code == "circuit_open"
    await bus.close()
    limited = await busbar.connect(publish_rate="0.01", rate_limit_mode="fail")
    await limited.publish("metrics.cpu", b"1")
    with pytest.raises(busbar.RateLimitedError, match="publish_rate"):
        await limited.publish("metrics.cpu", b"2")
    await limited.close()
    with pytest.raises(busbar.InvalidArgument, match="publish_buffer_full"):
        await busbar.connect(publish_buffer_full="drop")


async def test_bad_keywords() -> None:
    with pytest.raises(busbar.InvalidArgument, match="bakend"):
        await busbar.connect(bakend="nats")
    with pytest.raises(busbar.InvalidArgument, match="redis"):
        await busbar.connect(backend="redis")
    with pytest.raises(busbar.InvalidArgument, match="max_payload"):
        await busbar.connect(max_payload=0)
    with pytest.raises(TypeError, match="max_payload must be a str, int or bool, not float"):
        await busbar.connect(max_payload=1.5)  # type: ignore[arg-type]
    with pytest.raises(busbar.InvalidArgument, match="nats_user"):
        await busbar.connect(nats_user="svc")


async def test_text_option_of_wrong_type_is_type_error() -> None:
    # The same mistake fails the same way as in Node: a TypeError naming the option,
    # not the core's invalid_argument for the string form of the number.
    with pytest.raises(TypeError, match=r"connect\(\): backend must be a str, not int"):
        await busbar.connect(backend=5)
    with pytest.raises(TypeError, match=r"connect\(\): principal must be a str, not bool"):
        await busbar.connect(principal=True)
    with pytest.raises(TypeError, match=r"connect\(\): nats_url must be a str, not int"):
        await busbar.connect(nats_url=4222)
    # Numeric and flag options still take int and bool.
    bus = await busbar.connect(max_payload=64, encryption=False)
    await bus.close()


async def test_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUSBAR_MAX_PAYLOAD", "4")
    monkeypatch.setenv("BUSBAR_SOURCE", "from-env")
    bus = await busbar.connect()
    with pytest.raises(busbar.PayloadTooLarge):
        await bus.publish("e", b"12345")
    await bus.close()
    bus = await busbar.connect(max_payload=10)  # a keyword wins over the variable
    await bus.publish("e", b"12345")
    await bus.close()
    monkeypatch.setenv("BUSBAR_BAKEND", "nats")
    with pytest.raises(busbar.InvalidArgument, match="BUSBAR_BAKEND"):
        await busbar.connect()


async def test_unreachable_nats_is_a_backend_error() -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(busbar.BackendError) as e:
        await asyncio.wait_for(
            busbar.connect(backend="nats", nats_url=f"nats://127.0.0.1:{port}"), 20
        )
    assert e.value.code == "backend"
    text = str(e.value)
    assert text.count("Connection refused") == 1, f"each cause once (core's report): {text}"


async def test_lag_mode_raises_lagged_then_goes_on() -> None:
    bus = await busbar.connect(subscription_capacity=2, backpressure="lag")
    sub = await bus.subscribe("lag")
    for i in range(5):
        await bus.publish("lag", str(i))
    assert (await sub.__anext__()).data == b"0"
    assert (await sub.__anext__()).data == b"1"
    with pytest.raises(busbar.Lagged) as e:
        await sub.__anext__()
    assert e.value.code == "lagged" and "3" in str(e.value)
    await bus.publish("lag", b"after")
    assert (await sub.__anext__()).data == b"after"
    await bus.close()


async def test_a_full_buffer_makes_publish_wait_in_block_mode() -> None:
    bus = await busbar.connect(subscription_capacity=1)
    sub = await bus.subscribe("bp")
    await bus.publish("bp", b"1")
    second = asyncio.ensure_future(bus.publish("bp", b"2"))
    await asyncio.sleep(0.05)
    assert not second.done(), "the publisher waits for room"
    assert (await sub.__anext__()).data == b"1"
    await asyncio.wait_for(second, 2)
    assert (await asyncio.wait_for(sub.__anext__(), 2)).data == b"2"
    await bus.close()
