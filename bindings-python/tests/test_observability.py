"""metrics(), health(), the metrics_addr endpoint and the `busbar` logger, on every backend."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import urllib.error
import urllib.request

import pytest

import busbar


def sample(text: str, series: str) -> float | None:
    """The value of the sample line `series` (name and labels exactly as exposed)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split(" ")[1])
    return None


async def test_metrics_count_by_pattern_and_health_reports_state(bus: busbar.Bus) -> None:
    sub = await bus.queue_subscribe("orders.*", "workers")
    for i in range(3):
        await bus.publish(f"orders.{i}", b"x")
    await bus.flush()
    for _ in range(3):
        await asyncio.wait_for(sub.__anext__(), 5)
    text = bus.metrics()
    labels = '{pattern="orders.*",queue_group="workers"}'
    assert sample(text, f"busbar_subscription_delivered_total{labels}") == 3, text
    assert sample(text, f"busbar_subscription_active{labels}") == 1
    assert sample(text, "busbar_connected") == 1
    assert "orders.1" not in text
    assert text.endswith("# EOF\n")
    health = bus.health()
    assert health["state"] == "connected"
    assert health["ready"] is True
    assert health["subscriptions"] == 1
    assert health["pending_requests"] == 0
    assert health["last_error"] is None


async def test_health_after_close() -> None:
    bus = await busbar.connect()
    await bus.close()
    health = bus.health()
    assert health["state"] == "closed"
    assert health["ready"] is False
    assert sample(bus.metrics(), "busbar_connected") == 0


async def test_health_names_open_circuits() -> None:
    bus = await busbar.connect(breaker_failures=1)
    assert (bus.health()["open_circuits"], bus.health()["open_circuit_subjects"]) == (0, [])
    with pytest.raises(busbar.NoRespondersError):
        await bus.request("svc.down", b"?", timeout=1)
    health = bus.health()
    assert (health["open_circuits"], health["open_circuit_subjects"]) == (1, ["svc.down"])
    assert sample(bus.metrics(), "busbar_open_circuits") == 1
    with pytest.raises(busbar.CircuitOpenError):
        await bus.request("svc.down", b"?", timeout=1)
    await bus.close()

    # breaker_patterns: the subjects under a pattern share its circuit.
    shared = await busbar.connect(breaker_failures=1, breaker_patterns="svc.orders.* svc.>")
    with pytest.raises(busbar.NoRespondersError):
        await shared.request("svc.orders.a", b"?", timeout=1)
    with pytest.raises(busbar.CircuitOpenError, match=r"svc\.orders\.\*"):
        await shared.request("svc.orders.b", b"?", timeout=1)
    assert shared.health()["open_circuit_subjects"] == ["svc.orders.*"]
    await shared.close()
    with pytest.raises(busbar.InvalidArgumentError, match="breaker_patterns"):
        await busbar.connect(breaker_patterns="svc..bad")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


async def connect_serving() -> tuple[busbar.Bus, int]:
    """A bus serving its endpoint on a free loopback port, and that port.

    A port found free can be taken before the bus binds it, so "Address already in use"
    is retried on a fresh port, a bounded number of times; any other error fails the test.
    """
    for _ in range(20):
        port = free_port()
        try:
            return await busbar.connect(metrics_addr=f"127.0.0.1:{port}"), port
        except busbar.BackendError as e:
            if "Address already in use" not in str(e):
                raise
    raise AssertionError("20 free ports in a row were taken before the bus could bind them")


async def test_metrics_addr_serves_the_endpoint() -> None:
    bus, port = await connect_serving()
    try:
        await bus.publish("a.b", b"1")
        status, body = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert sample(body, "busbar_published_total") == 1
        status, body = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/readyz")
        assert status == 200
        assert json.loads(body)["state"] == "connected"
    finally:
        await bus.close()


async def test_a_malformed_metrics_addr_is_refused() -> None:
    with pytest.raises(busbar.InvalidArgument):
        await busbar.connect(metrics_addr="not an address")


async def test_records_reach_the_busbar_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="busbar")
    bus = await busbar.connect(backpressure="lag", subscription_capacity=1)
    sub = await bus.subscribe("lag.>")
    for _ in range(3):
        await bus.publish("lag.x", b"x")
    await asyncio.wait_for(sub.__anext__(), 5)
    with pytest.raises(busbar.Lagged):
        await asyncio.wait_for(sub.__anext__(), 5)
    await bus.close()
    lag = [r for r in caplog.records if r.name.startswith("busbar") and "lag" in r.getMessage()]
    assert lag, [r.getMessage() for r in caplog.records]
    assert lag[0].levelno == logging.WARNING
    assert any(r.levelno == logging.INFO and "connected" in r.getMessage() for r in caplog.records)
