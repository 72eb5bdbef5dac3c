"""Interop on Kafka, on a private tansu broker: a plain Kafka client (confluent-kafka, which
bundles its own librdkafka) and the CloudEvents SDK's Kafka protocol binding read what
busbar writes, write what busbar reads, and answer and ask busbar's requests
(docs/design.md §3, §5: one topic per bus, the subject as key and `ce_subject`, binary
content mode, `reply-to` and `ce_correlationid` for requests)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event, to_binary_event
from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import Consumer, Message, Producer
from tansu_server import Tansu

import busbar

MARKER = "busbar-marker"


@pytest.fixture
def topic() -> str:
    return f"py-interop-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def bus(tansu: Tansu, topic: str) -> AsyncIterator[busbar.Bus]:
    b = await busbar.connect(backend="kafka", kafka_brokers=tansu.brokers, kafka_topic=topic)
    try:
        yield b
    finally:
        await b.close()


def headers_of(record: Message) -> dict[str, bytes]:
    """A consumed record's headers (a list of pairs; a missing value read as empty)."""
    found = record.headers() or []
    pairs = found.items() if isinstance(found, dict) else found
    return {
        name: value.encode() if isinstance(value, str) else value or b"" for name, value in pairs
    }


def read_records(
    brokers: str, topic: str, done: Callable[[list[Message]], bool], timeout: float = 20.0
) -> list[Message]:
    """A plain consumer in a group of its own reads `topic` from its start (busbar's
    position markers skipped, as any reader of a busbar topic should) until `done`."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"plain-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            record = consumer.poll(0.2)
            if record is None:
                continue
            error = record.error()
            assert error is None, f"the plain consumer failed: {error}"
            if MARKER in headers_of(record):
                continue
            records.append(record)
            if done(records):
                return records
    finally:
        consumer.close()
    raise AssertionError(f"after {timeout} s the plain consumer had {len(records)} records")


def produce(brokers: str, topic: str, records: list[KafkaMessage]) -> None:
    producer = Producer({"bootstrap.servers": brokers})
    failed: list[str] = []

    def report(error: Any, _record: Message) -> None:
        if error is not None:
            failed.append(str(error))

    for r in records:
        producer.produce(
            topic, value=r.value, key=r.key, headers=list(r.headers.items()), on_delivery=report
        )
    assert producer.flush(20) == 0, "the plain producer did not deliver everything in 20 s"
    assert failed == [], failed


async def test_the_cloudevents_sdk_reads_what_busbar_puts_on_kafka(
    tansu: Tansu, topic: str, bus: busbar.Bus
) -> None:
    """A busbar record, read by confluent-kafka and parsed by the CloudEvents SDK's Kafka
    binding: the same event busbar's own subscriber sees."""
    own = await bus.subscribe("interop.ce.*")
    await bus.publish(
        "interop.ce.created",
        {"qty": 3},
        event_type="com.example.created",
        correlation_id="corr-1",
        headers={"tenant": "st-marys"},
    )
    await bus.flush()
    seen = await asyncio.wait_for(own.__anext__(), 10)
    [record] = await asyncio.to_thread(read_records, tansu.brokers, topic, lambda rs: len(rs) >= 1)

    assert record.key() == b"interop.ce.created", "the subject is the record key"
    raw = headers_of(record)
    assert raw["tenant"] == b"st-marys", "user headers keep their own names"
    event = from_binary_event(
        KafkaMessage(headers=raw, key=record.key(), value=record.value() or b"")
    )
    assert event.get_specversion() == "1.0"
    assert event.get_id() == seen.id
    assert event.get_source() == seen.source
    assert event.get_type() == "com.example.created"
    assert event.get_subject() == "interop.ce.created"
    assert event.get_datacontenttype() == "application/json"
    assert event.get_extension("correlationid") == "corr-1"
    assert event.get_extension("partitionkey") == "interop.ce.created"
    assert event.get_data() == {"qty": 3}
    sent = event.get_time()
    assert sent is not None and abs(sent.timestamp() - seen.time) < 1


async def test_busbar_reads_plain_records_and_sdk_events(
    tansu: Tansu, topic: str, bus: busbar.Bus
) -> None:
    """A plain record takes its subject from its key; an event the SDK encoded takes its
    subject from `ce_subject` and keeps its attributes."""
    sub = await bus.subscribe("plain.>")
    event = CloudEvent(
        attributes={
            "id": "evt-42",
            "source": "/plain/producer",
            "type": "com.example.plain",
            "subject": "plain.event",
            "datacontenttype": "application/json",
        },
        data={"n": 1},
    )
    records = [
        KafkaMessage(headers={}, key=b"plain.keyed", value=b"by key"),
        to_binary_event(event),
    ]
    await asyncio.to_thread(produce, tansu.brokers, topic, records)
    got = [await asyncio.wait_for(sub.__anext__(), 10) for _ in range(2)]
    by_subject = {m.subject: m for m in got}
    assert sorted(by_subject) == ["plain.event", "plain.keyed"]
    keyed = by_subject["plain.keyed"]
    assert keyed.data == b"by key"
    assert keyed.source == "kafka", "a plain record's source says where it came from"
    assert len(keyed.id) == 36, "a generated id"
    sdk = by_subject["plain.event"]
    assert (sdk.id, sdk.source, sdk.event_type) == (
        "evt-42",
        "/plain/producer",
        "com.example.plain",
    )
    assert sdk.content_type == "application/json"
    assert sdk.json() == {"n": 1}


async def test_a_plain_responder_answers_a_busbar_request(
    tansu: Tansu, topic: str, bus: busbar.Bus
) -> None:
    """The plain client reads the request's `reply-to` and `ce_id`, and produces the reply
    keyed by that inbox with `ce_correlationid`."""
    asking = asyncio.ensure_future(bus.request("plain.svc", b"question", timeout=20))

    def is_request(rs: list[Message]) -> bool:
        return headers_of(rs[-1]).get("ce_subject") == b"plain.svc"

    records = await asyncio.to_thread(read_records, tansu.brokers, topic, is_request)
    request = headers_of(records[-1])
    reply_to = request["reply-to"].decode()
    assert reply_to.startswith("_INBOX."), reply_to
    assert records[-1].value() == b"question"
    reply = KafkaMessage(
        headers={"ce_correlationid": request["ce_id"]},
        key=reply_to.encode(),
        value=b"answer from a plain client",
    )
    await asyncio.to_thread(produce, tansu.brokers, topic, [reply])
    answered = await asyncio.wait_for(asking, 25)
    assert answered.data == b"answer from a plain client"


async def test_a_busbar_responder_answers_a_plain_request(
    tansu: Tansu, topic: str, bus: busbar.Bus
) -> None:
    """A plain client asks with a record keyed by the service's subject and a `reply-to`
    header, and reads the reply keyed by its inbox, correlated by its `ce_id`."""
    responder = await bus.subscribe("svc.time")

    async def serve() -> None:
        async for req in responder:
            await req.respond(b"tea time for " + req.data)

    serving = asyncio.ensure_future(serve())
    try:
        inbox = f"_INBOX.plain.{uuid.uuid4().hex[:8]}"
        ask = KafkaMessage(
            headers={"reply-to": inbox.encode(), "ce_id": b"plain-req-1"},
            key=b"svc.time",
            value=b"confluent-kafka",
        )
        await asyncio.to_thread(produce, tansu.brokers, topic, [ask])

        def answered(rs: list[Message]) -> bool:
            return rs[-1].key() == inbox.encode()

        records = await asyncio.to_thread(read_records, tansu.brokers, topic, answered)
        reply = records[-1]
        assert reply.value() == b"tea time for confluent-kafka"
        assert headers_of(reply)["ce_correlationid"] == b"plain-req-1"
    finally:
        serving.cancel()
