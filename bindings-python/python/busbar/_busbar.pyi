"""Type stubs of the native module busbar._busbar (checked with mypy.stubtest)."""

import datetime
from collections.abc import Awaitable, Generator, Sequence
from types import TracebackType
from typing import Any, Literal, final

from typing_extensions import Self, disjoint_base

__all__ = [
    "CONFIG_KEYS",
    "BackendError",
    "Bus",
    "BusError",
    "Closed",
    "CryptoError",
    "DecodeError",
    "DurableMessage",
    "DurableSubscription",
    "Forbidden",
    "InvalidArgument",
    "InvalidSubject",
    "Lagged",
    "Message",
    "NoResponders",
    "PayloadTooLarge",
    "PublishAck",
    "Ready",
    "StreamInfo",
    "Subscription",
    "Timeout",
    "UnsupportedError",
    "__version__",
    "connect",
    "subject_matches",
    "validate_pattern",
    "validate_subject",
]

CONFIG_KEYS: list[str]
__version__: str
"""busbar's version, "major.minor.patch": the same in every language."""

_Data = object
"""bytes-like as is, str as UTF-8, anything else serialised as JSON."""

def connect(**kwargs: str | int | bool) -> Awaitable[Bus]:
    """Connects: the in-memory bus unless `backend` / BUSBAR_BACKEND says "nats" or "rabbitmq"."""

def subject_matches(pattern: str, subject: str) -> bool: ...
def validate_subject(subject: str) -> None: ...
def validate_pattern(pattern: str) -> None: ...

@final
class Ready:
    """An awaitable whose outcome is already known."""

    def __await__(self) -> Generator[Any, None, Any]: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> None: ...

@final
class Bus:
    @property
    def backend(self) -> str: ...
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
    def subscribe(self, pattern: str) -> Awaitable[Subscription]: ...
    def queue_subscribe(self, pattern: str, group: str) -> Awaitable[Subscription]: ...
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
    def __aenter__(self) -> Awaitable[Self]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Awaitable[None]: ...

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
    def close(self) -> Awaitable[None]: ...
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
    def messages(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def first_sequence(self) -> int: ...
    @property
    def last_sequence(self) -> int: ...

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

class InvalidSubject(BusError): ...
class InvalidArgument(BusError, ValueError): ...
class PayloadTooLarge(BusError): ...
class Timeout(BusError): ...
class NoResponders(BusError): ...
class Forbidden(BusError): ...
class Closed(BusError): ...
class DecodeError(BusError, ValueError): ...
class CryptoError(BusError): ...
class BackendError(BusError): ...
class UnsupportedError(BusError): ...

class Lagged(BusError):
    @property
    def missed(self) -> int: ...
