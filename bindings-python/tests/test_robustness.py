"""Never silent, never stuck: every message a slow subscriber does not get is counted and
raised as `busbar.Lagged` at the gap (delivered + missed = published, at a million
messages on NATS), a subscription's buffer is bounded in bytes, and a message that
cannot be decoded is logged and counted while iteration and responders go on."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

import busbar
from nats_server import NatsServer, flush_nats_py

MILLION = 1_000_000


def publish_raw(port: int, subject: str, count: int) -> None:
    """Publishes `count` small plain messages as fast as a socket takes them (the NATS
    protocol by hand), then waits for the server's PONG: it has routed them all."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        reader = s.makefile("rb")
        assert reader.readline().startswith(b"INFO ")
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        chunk = f"PUB {subject} 8\r\n12345678\r\n".encode() * 10_000
        for _ in range(count // 10_000):
            s.sendall(chunk)
        s.sendall(b"PING\r\n")
        while True:
            line = reader.readline()
            assert line and not line.startswith(b"-ERR"), line
            if line.startswith(b"PONG"):
                return


class Seen:
    def __init__(self) -> None:
        self.messages = 0
        self.told_missed = 0
        self.notices = 0


async def consume_slowly(sub: busbar.Subscription, seen: Seen) -> None:
    """Iterates to the end, pausing 1 ms every 512 messages; a `Lagged` notice is counted
    and iteration goes on."""
    while True:
        try:
            async for _ in sub:
                seen.messages += 1
                if seen.messages % 512 == 0:
                    await asyncio.sleep(0.001)
            return
        except busbar.Lagged as notice:
            seen.told_missed += notice.missed
            seen.notices += 1


@pytest.mark.parametrize("mode", ["block", "lag"])
async def test_a_slow_consumer_on_nats_is_told_every_loss(
    nats_server: NatsServer, mode: str
) -> None:
    bus = await busbar.connect(backend="nats", nats_url=nats_server.url, backpressure=mode)
    try:
        sub = await bus.subscribe("load.*")
        await bus.flush()
        seen = Seen()
        consumer = asyncio.ensure_future(consume_slowly(sub, seen))
        await asyncio.to_thread(publish_raw, nats_server.port, "load.x", MILLION)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = sub.stats()
            if s["delivered"] + s["missed"] >= MILLION:
                break
            await asyncio.sleep(0.02)
        stats = sub.stats()
        await sub.drain()
        await asyncio.wait_for(consumer, 60)
        assert stats["delivered"] + stats["missed"] == MILLION, stats
        assert seen.messages + seen.told_missed == MILLION, vars(seen)
        assert seen.told_missed == stats["missed"], (vars(seen), stats)
        assert stats["missed"] > 0, "the consumer was meant to be too slow"
    finally:
        await bus.close()


async def test_a_lag_notice_says_how_many_were_missed() -> None:
    bus = await busbar.connect(subscription_capacity=2, backpressure="lag")
    sub = await bus.subscribe("lag")
    for i in range(5):
        await bus.publish("lag", str(i))
    assert [(await sub.__anext__()).data for _ in range(2)] == [b"0", b"1"]
    with pytest.raises(busbar.Lagged) as e:
        await sub.__anext__()
    assert e.value.missed == 3 and e.value.code == "lagged"
    assert "3 messages" in str(e.value)
    await bus.close()


async def test_the_byte_bound_holds_a_subscription_to_its_bytes() -> None:
    mib = 1024 * 1024
    bus = await busbar.connect(backpressure="lag", subscription_max_bytes=8 * mib)
    sub = await bus.subscribe("big")
    payload = bytes(1_000_000)
    for _ in range(200):
        await bus.publish("big", payload)
    s = sub.stats()
    assert s["delivered"] + s["missed"] == 200, s
    assert s["pending"] <= 8 and s["pending_bytes"] <= 8 * mib, s
    with pytest.raises(busbar.InvalidArgument):
        await busbar.connect(subscription_max_bytes=0)
    await bus.close()


@pytest.fixture
async def plain(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    try:
        yield nc
    finally:
        await nc.close()


BAD = {"ce-time": "not-a-time"}


async def test_an_undecodable_message_is_logged_counted_and_skipped(
    nats_server: NatsServer, plain: Client, caplog: pytest.LogCaptureFixture
) -> None:
    bus = await busbar.connect(backend="nats", nats_url=nats_server.url)
    try:
        sub = await bus.subscribe("mixed.>")
        await bus.flush()
        with caplog.at_level(logging.WARNING, logger="busbar"):
            await plain.publish("mixed.bad", b"x", headers=BAD)
            await plain.publish("mixed.good", b"ok")
            await flush_nats_py(plain)
            msg = await asyncio.wait_for(sub.__anext__(), 5)
            assert msg.data == b"ok"
            # Also when the bad message is already buffered when iteration asks.
            await plain.publish("mixed.bad", b"x", headers=BAD)
            await plain.publish("mixed.good", b"ok2")
            await flush_nats_py(plain)
            await asyncio.sleep(0.2)
            msg = await asyncio.wait_for(sub.__anext__(), 5)
            assert msg.data == b"ok2"
            # The second comes within a second of the first: its record follows a second
            # after the first record (at most one a second per subscription).
            await asyncio.sleep(1.3)
        assert sub.stats()["undecodable"] == 2
        warnings = [r.getMessage() for r in caplog.records if r.name == "busbar"]
        assert len(warnings) == 2 and "not-a-time" in warnings[0]
        assert skipped_counts(warnings) == [1, 1]
    finally:
        await bus.close()


def skipped_counts(records: list[str]) -> list[int]:
    """The count of skipped messages each `busbar` log record states."""
    counts = []
    for text in records:
        found = re.search(r"skipped (\d+) messages? that could not be decoded", text)
        assert found, text
        counts.append(int(found.group(1)))
    return counts


async def test_an_undecodable_flood_is_logged_at_most_once_a_second_with_counts(
    nats_server: NatsServer, plain: Client, caplog: pytest.LogCaptureFixture
) -> None:
    # A hostile peer's 1,000 undecodable messages make a handful of records, not 1,000,
    # and their counts add up to every message skipped.
    bus = await busbar.connect(backend="nats", nats_url=nats_server.url)
    try:
        sub = await bus.subscribe("flood.>")
        await bus.flush()
        with caplog.at_level(logging.WARNING, logger="busbar"):
            for _ in range(1000):
                await plain.publish("flood.bad", b"x", headers=BAD)
            await plain.publish("flood.good", b"ok")
            await flush_nats_py(plain)
            msg = await asyncio.wait_for(sub.__anext__(), 10)
            assert msg.data == b"ok"
            await asyncio.sleep(1.3)  # the held-back count is written a second later
        assert sub.stats()["undecodable"] == 1000
        records = [r.getMessage() for r in caplog.records if r.name == "busbar"]
        assert 2 <= len(records) <= 5, records[:5]
        assert sum(skipped_counts(records)) == 1000
    finally:
        await bus.close()


async def test_an_iterating_responder_outlives_an_undecodable_request(
    nats_server: NatsServer, plain: Client
) -> None:
    bus = await busbar.connect(backend="nats", nats_url=nats_server.url)
    try:
        sub = await bus.subscribe("svc.echo")
        await bus.flush()

        async def serve() -> None:
            async for req in sub:
                await req.respond(req.data)

        service = asyncio.ensure_future(serve())
        await plain.publish("svc.echo", b"x", reply="reply.bad", headers=BAD)
        await flush_nats_py(plain)
        reply = await bus.request("svc.echo", "still here", timeout=5)
        assert reply.data == b"still here"
        assert not service.done()
        assert sub.stats()["undecodable"] == 1
        await sub.unsubscribe()
        await asyncio.wait_for(service, 5)
    finally:
        await bus.close()


def test_the_interpreter_exits_cleanly_while_runtime_threads_log() -> None:
    """A record logged by a runtime thread while the interpreter shuts down must not crash
    it (busbar stops entering Python at `atexit`; later warnings go to stderr). 48 runs of
    exit_while_logging.py, four at a time: without the guard about one in ten aborted."""
    here = Path(__file__).parent
    script = [sys.executable, str(here / "exit_while_logging.py"), str(here)]
    failures: list[str] = []
    for _ in range(12):
        runs = [
            subprocess.Popen(script, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(4)
        ]
        for run in runs:
            out, _ = run.communicate(timeout=60)
            if run.returncode != 0:
                failures.append(f"return code {run.returncode}:\n{out[-2000:]}")
    assert not failures, f"{len(failures)} of 48 runs failed; first: {failures[0]}"
