"""Services from Python (docs/design.md §5): start_service and add_endpoint over core's
endpoint jobs, found by discover, on every backend (and on a private nats-server a plain
nats-py client calls the endpoint)."""

from __future__ import annotations

import nats
import pytest

import busbar
from nats_server import NatsServer


class Refused(Exception):
    code = 422


async def double(request: busbar.Message) -> str:
    text = request.data.decode()
    if text.startswith("-"):
        raise Refused("negative")
    return str(2 * int(text))  # ValueError for text that is not a number: a 500


async def calc(bus: busbar.Bus) -> busbar.Service:
    service = await bus.start_service("calc", "1.2.3", description="doubles")
    await service.add_endpoint("double", "calc.double", double)
    return service


async def test_a_service_answers_fails_counts_and_is_discovered(bus: busbar.Bus) -> None:
    service = await calc(bus)
    await bus.flush()
    assert (await bus.request("calc.double", "21", timeout=5)).data == b"42"
    negative = await bus.request("calc.double", "-1", timeout=5)
    assert (
        negative.headers["Nats-Service-Error"],
        negative.headers["Nats-Service-Error-Code"],
    ) == (
        "negative",
        "422",
    )
    nan = await bus.request("calc.double", "x", timeout=5)
    assert nan.headers["Nats-Service-Error-Code"] == "500"
    assert "invalid literal" in nan.headers["Nats-Service-Error"]
    [info] = await bus.discover("INFO", name="calc", wait=0.3)
    assert info["id"] == service.id
    assert (info["version"], info["description"], info["endpoints"][0]["subject"]) == (
        "1.2.3",
        "doubles",
        "calc.double",
    )
    [stats] = await bus.discover("STATS", name="calc", wait=0.3)
    assert (stats["endpoints"][0]["num_requests"], stats["endpoints"][0]["num_errors"]) == (3, 2)
    await service.stop()
    with pytest.raises((busbar.NoRespondersError, busbar.TimeoutError)):
        await bus.request("calc.double", "1", timeout=0.3)


async def test_bad_service_input_is_refused_clearly() -> None:
    bus = await busbar.connect()
    try:
        with pytest.raises(busbar.InvalidArgumentError):
            await bus.start_service("bad name", "1.0.0")
        with pytest.raises(ValueError, match=r"start_service\(\): rest must be a finite"):
            await bus.start_service("ok", "1.0.0", rest=-1)
        with pytest.raises(TypeError, match="start_service\\(\\): name"):
            await bus.start_service(5, "1.0.0")  # type: ignore[arg-type]
        service = await bus.start_service("ok", "1.0.0")
        with pytest.raises(TypeError, match="handler"):
            await service.add_endpoint("e", "svc.e", "not callable")  # type: ignore[arg-type]
        with pytest.raises(busbar.InvalidSubjectError):
            await service.add_endpoint("e", "a..b", lambda m: "x")
        # A reply the handler gives that cannot be sent is an error reply, not a hang.
        await service.add_endpoint("odd", "svc.odd", lambda m: object())
        odd = await bus.request("svc.odd", "x", timeout=5)
        assert odd.headers["Nats-Service-Error-Code"] == "500"
        jobs = await service.endpoint_jobs("twice", "svc.twice")
        asked = bus.request("svc.twice", "x", timeout=5)
        job = await jobs.next()
        assert job is not None and job.request.data == b"x"
        job.reply("once")
        with pytest.raises(busbar.InvalidArgumentError, match="answered already"):
            job.reply("twice")
        assert (await asked).data == b"once"
        await service.stop()
        assert await jobs.next() is None, "the jobs end when the service stops"
    finally:
        await bus.close()


async def test_a_plain_nats_py_client_calls_a_busbar_endpoint(nats_server: NatsServer) -> None:
    bus = await busbar.connect(backend="nats", nats_url=nats_server.url)
    nc = await nats.connect(nats_server.url)
    try:
        service = await calc(bus)
        await bus.flush()
        reply = await nc.request("calc.double", b"5", timeout=5)
        assert reply.data == b"10"
        await service.stop()
    finally:
        await nc.close()
        await bus.close()
