"""Type stubs of the native module busbar._busbar (checked with mypy.stubtest)."""

import builtins
import datetime
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from types import TracebackType
from typing import Any, Literal, TypedDict, final

from typing_extensions import Self, disjoint_base

__all__ = [
    "CONFIG_KEYS",
    "BackendError",
    "Bus",
    "BusError",
    "CircuitOpenError",
    "Closed",
    "ClosedError",
    "ConnectionEvent",
    "ConnectionEvents",
    "ConsumerInfo",
    "CryptoError",
    "DecodeError",
    "DurableMessage",
    "DurableSubscription",
    "Forbidden",
    "ForbiddenError",
    "InvalidArgument",
    "InvalidArgumentError",
    "InvalidSubject",
    "InvalidSubjectError",
    "Lagged",
    "LaggedError",
    "Message",
    "NoResponders",
    "NoRespondersError",
    "PayloadTooLarge",
    "PayloadTooLargeError",
    "PublishAck",
    "RateLimitedError",
    "Ready",
    "Service",
    "ServiceJob",
    "ServiceJobs",
    "StreamInfo",
    "Subscription",
    "Timeout",
    "TimeoutError",
    "UnsupportedError",
    "Waiting",
    "__version__",
    "_set_trace_hook",
    "connect",
    "subject_matches",
    "validate_pattern",
    "validate_subject",
]

CONFIG_KEYS: list[str]
__version__: str
"""busbar's version, "major.minor.patch": the same in every language."""

_Data = object

class _PublishOptions(TypedDict, total=False):
    headers: dict[str, str] | None
    id: str | None
    event_type: str | None
    content_type: str | None
    correlation_id: str | None
    classification: str | None
    traceparent: str | None
    tracestate: str | None

_PublishItem = tuple[str, _Data] | tuple[str, _Data, _PublishOptions | None]
"""bytes-like as is, str as UTF-8, anything else serialised as JSON."""

def connect(url: str | None = None, **kwargs: str | int | bool) -> Awaitable[Bus]:
    """Connects: the in-memory bus unless `backend` / BUSBAR_BACKEND says "nats",
    "rabbitmq" or "kafka"."""

def subject_matches(pattern: str, subject: str) -> bool: ...
def _set_trace_hook(hook: Callable[[], tuple[str, str | None] | None] | None) -> None: ...
def validate_subject(subject: str) -> None: ...
def validate_pattern(pattern: str) -> None: ...

@final
class Ready:
    """An awaitable whose outcome is already known."""

    def __await__(self) -> Generator[Any, None, Any]: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> None: ...
    def send(self, value: None) -> None: ...
    def throw(self, typ: object, val: object = None, _tb: object = None) -> None: ...
    def close(self) -> None: ...

@final
class Waiting:
    """An awaitable of a call that has to wait (a coroutine to `asyncio.create_task`)."""

    def __await__(self) -> Generator[Any, None, Any]: ...
    def send(self, value: object) -> Any: ...
    def throw(self, typ: object, val: object = None, tb: object = None) -> Any: ...
    def close(self) -> None: ...
    def cancel(self) -> bool: ...
    def done(self) -> bool: ...

@final
class Bus:
    @property
    def backend(self) -> str: ...
    def start_service(
        self,
        name: str,
        version: str,
        *,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        queue_group: str | None = None,
        max_failures: int | None = None,
        rest: float | None = None,
    ) -> Awaitable[Service]: ...
    def discover(
        self,
        verb: Literal["PING", "INFO", "STATS"] | str | None = None,
        *,
        name: str | None = None,
        wait: float | None = None,
    ) -> Awaitable[list[dict[str, Any]]]: ...
    @property
    def is_connected(self) -> bool: ...
    @property
    def is_closed(self) -> bool: ...
    def publish(
        self,
        subject: str,
        data: _Data = None,
        *,
        headers: dict[str, str] | None = None,
        id: str | None = None,
        event_type: str | None = None,
        content_type: str | None = None,
        correlation_id: str | None = None,
        classification: str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
    ) -> Awaitable[None]: ...
    def publish_batch(self, items: Iterable[_PublishItem]) -> Awaitable[int]: ...
    def subscribe(
        self, pattern: str, *, cb: Callable[[Message], object] | None = None
    ) -> Awaitable[Subscription]: ...
    def queue_subscribe(
        self, pattern: str, group: str, *, cb: Callable[[Message], object] | None = None
    ) -> Awaitable[Subscription]: ...
    def drain(self) -> Awaitable[None]: ...
    def request(
        self,
        subject: str,
        data: _Data = None,
        *,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        id: str | None = None,
    ) -> Awaitable[Message]: ...
    def flush(self) -> Awaitable[None]: ...
    def close(self) -> Awaitable[None]: ...
    def stats(self) -> dict[str, int]: ...
    def connection_events(self) -> ConnectionEvents: ...
    def subscribe_as(
        self,
        principal: str,
        pattern: str,
        *,
        roles: str | Sequence[str] | None = None,
        queue_group: str | None = None,
        classes: str | Sequence[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Awaitable[Subscription]: ...
    def request_as(
        self,
        principal: str,
        subject: str,
        data: _Data = None,
        *,
        roles: str | Sequence[str] | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        id: str | None = None,
    ) -> Awaitable[Message]: ...
    def policy_stats(self) -> dict[str, int]: ...
    def verify_audit(self) -> dict[str, Any]: ...
    def metrics(self) -> str: ...
    def health(self) -> dict[str, str | bool | int | list[str] | None]: ...
    def declare_stream(
        self,
        name: str,
        subjects: str | Sequence[str],
        *,
        max_age: float | None = None,
        max_bytes: int | None = None,
        max_messages: int | None = None,
        duplicate_window: float | None = None,
    ) -> Awaitable[StreamInfo]: ...
    def stream_info(self, name: str) -> Awaitable[StreamInfo]: ...
    def list_streams(self) -> Awaitable[list[StreamInfo]]: ...
    def delete_stream(self, name: str) -> Awaitable[None]: ...
    def list_consumers(self, stream: str) -> Awaitable[list[ConsumerInfo]]: ...
    def consumer_info(self, stream: str, name: str) -> Awaitable[ConsumerInfo]: ...
    def delete_consumer(self, stream: str, name: str) -> Awaitable[None]: ...
    def publish_durable(
        self,
        subject: str,
        data: _Data = None,
        *,
        headers: dict[str, str] | None = None,
        id: str | None = None,
        event_type: str | None = None,
        content_type: str | None = None,
        correlation_id: str | None = None,
        classification: str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
    ) -> Awaitable[PublishAck]: ...
    def durable_subscribe(
        self,
        stream: str,
        name: str,
        *,
        filter: str | None = None,
        start: Literal["beginning", "new"] | int | datetime.datetime | None = None,
        ack_wait: float | None = None,
        max_deliver: int | None = None,
        backoff: tuple[float, float, float] | None = None,
        dlq_prefix: str | None = None,
        rate_limit: float | None = None,
        max_ack_pending: int | None = None,
    ) -> Awaitable[DurableSubscription]: ...
    def durable_subscribe_as(
        self,
        principal: str,
        stream: str,
        name: str,
        *,
        roles: str | Sequence[str] | None = None,
        filter: str | None = None,
        start: Literal["beginning", "new"] | int | datetime.datetime | None = None,
        ack_wait: float | None = None,
        max_deliver: int | None = None,
        backoff: tuple[float, float, float] | None = None,
        dlq_prefix: str | None = None,
        rate_limit: float | None = None,
        max_ack_pending: int | None = None,
    ) -> Awaitable[DurableSubscription]: ...
    def __aenter__(self) -> Awaitable[Self]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Awaitable[None]: ...

@final
class Service:
    @property
    def id(self) -> str: ...
    def add_endpoint(
        self, name: str, subject: str, handler: Callable[[Message], object]
    ) -> Awaitable[None]: ...
    def endpoint_jobs(self, name: str, subject: str) -> Awaitable[ServiceJobs]: ...
    def stop(self) -> Awaitable[None]: ...

@final
class ServiceJobs:
    def next(self) -> Awaitable[ServiceJob | None]: ...

@final
class ServiceJob:
    @property
    def request(self) -> Message: ...
    def reply(self, data: _Data = None) -> None: ...
    def fail(self, message: str, code: int | None = None) -> None: ...

@final
class ConnectionEvent:
    @property
    def kind(self) -> str: ...
    @property
    def detail(self) -> str | None: ...

@final
class ConnectionEvents:
    def __aiter__(self) -> Self: ...
    def __anext__(self) -> Awaitable[ConnectionEvent]: ...

@final
class Subscription:
    @property
    def pattern(self) -> str: ...
    @property
    def queue_group(self) -> str | None: ...
    def __aiter__(self) -> Self: ...
    def __anext__(self) -> Awaitable[Message]: ...
    def unsubscribe(self) -> Awaitable[None]: ...
    def drain(self) -> Awaitable[None]: ...
    def stats(self) -> dict[str, int | bool]: ...
    def __aenter__(self) -> Awaitable[Self]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Awaitable[None]: ...

@disjoint_base
class Message:
    @property
    def subject(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def id(self) -> str: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def reply_to(self) -> str | None: ...
    @property
    def source(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def time(self) -> float: ...
    @property
    def traceparent(self) -> str | None: ...
    @property
    def tracestate(self) -> str | None: ...
    @property
    def classification(self) -> str | None: ...
    @property
    def keyid(self) -> str | None: ...
    def json(self) -> Any: ...
    def respond(self, data: _Data, *, headers: dict[str, str] | None = None) -> Awaitable[None]: ...

@final
class DurableMessage(Message):
    """A Message from a durable stream; settle it with one of ack(), nak() or term()."""

    @property
    def attempt(self) -> int: ...
    @property
    def sequence(self) -> int: ...
    @property
    def stream(self) -> str: ...
    def ack(self) -> Awaitable[None]: ...
    def nak(self, delay: float | None = None) -> Awaitable[None]: ...
    def term(self, reason: str) -> Awaitable[None]: ...
    def in_progress(self) -> Awaitable[None]: ...

@final
class DurableSubscription:
    @property
    def stream(self) -> str: ...
    @property
    def name(self) -> str: ...
    def __aiter__(self) -> Self: ...
    def __anext__(self) -> Awaitable[DurableMessage]: ...
    def unsubscribe(self) -> Awaitable[None]: ...
    def drain(self) -> Awaitable[None]: ...
    def stats(self) -> dict[str, int]: ...
    def __aenter__(self) -> Awaitable[Self]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Awaitable[None]: ...

@final
class StreamInfo:
    @property
    def name(self) -> str: ...
    @property
    def subjects(self) -> list[str]: ...
    @property
    def messages(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def first_sequence(self) -> int: ...
    @property
    def last_sequence(self) -> int: ...

@final
class ConsumerInfo:
    @property
    def stream(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def filter(self) -> str | None: ...
    @property
    def pending(self) -> int: ...
    @property
    def ack_pending(self) -> int: ...
    @property
    def delivered_sequence(self) -> int: ...

@final
class PublishAck:
    @property
    def stream(self) -> str: ...
    @property
    def sequence(self) -> int: ...
    @property
    def duplicate(self) -> bool: ...

class BusError(Exception):
    code: str
    # Set on the error that stopped `publish_batch`: how many items went before it.
    published: int | None

class InvalidSubjectError(BusError): ...
class InvalidArgumentError(BusError, ValueError): ...
class PayloadTooLargeError(BusError): ...
class TimeoutError(BusError, builtins.TimeoutError): ...
class NoRespondersError(BusError): ...
class ForbiddenError(BusError): ...
class ClosedError(BusError): ...
class DecodeError(BusError, ValueError): ...
class CryptoError(BusError): ...
class BackendError(BusError): ...
class UnsupportedError(BusError): ...
class CircuitOpenError(BusError): ...
class RateLimitedError(BusError): ...

class LaggedError(BusError):
    @property
    def missed(self) -> int: ...

# The names of before docs/design.md §9 (every class ends in `Error`).
InvalidSubject = InvalidSubjectError
InvalidArgument = InvalidArgumentError
PayloadTooLarge = PayloadTooLargeError
Timeout = TimeoutError
NoResponders = NoRespondersError
Forbidden = ForbiddenError
Closed = ClosedError
Lagged = LaggedError
